//! `units`: arbitrary bytes as a units file read by `abkit::simulate::run` (the CSV and
//! plain readers, gzip detection, bad-line handling), on a one-experiment configuration.
//!
//! The first byte selects how: bit 0 = CSV with id column `id` (else plain ids), bit 1 =
//! skip bad lines, bits 2-3 = units per chunk (1, 2, 3 or the default 65536), bits 4-5 = the
//! longest line accepted (the default 64 KiB, or 1, 7 or 64 bytes, so that inputs of a few KiB
//! reach the overlong-line paths). The rest is the file.
#![no_main]

use abkit::simulate::{run, InputFormat, SimulateOptions, UnitSource};
use abkit::{Sdk, Snapshot};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::sync::{Arc, LazyLock};

const CONFIG: &str = r#"
[[experiments]]
key = "checkout"
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]
overrides = { "qa-1" = "treatment" }
targeting = { country = ["US", "CA"] }
"#;

static SNAPSHOT: LazyLock<Arc<Snapshot>> = LazyLock::new(|| {
    Sdk::from_toml_str(CONFIG)
        .expect("the fixed config is valid")
        .snapshot()
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let csv = mode & 1 == 1;
    let skip_bad_lines = mode & 2 == 2;
    let chunk_units = match (mode >> 2) & 3 {
        0 => 1,
        1 => 2,
        2 => 3,
        _ => 1 << 16,
    };
    let format = if csv {
        InputFormat::Csv {
            id_column: "id".to_string(),
        }
    } else {
        InputFormat::Plain
    };
    let opts = SimulateOptions::default()
        .with_now_ms(Some(1_767_225_600_000))
        .with_threads(Some(1))
        .with_skip_bad_lines(skip_bad_lines)
        .with_chunk_units(chunk_units);
    let max_line_bytes = match (mode >> 4) & 3 {
        0 => None,
        1 => Some(1),
        2 => Some(7),
        _ => Some(64),
    };
    let mut source = UnitSource::from_reader("fuzz-units", Cursor::new(body.to_vec()), format);
    if let Some(max) = max_line_bytes {
        source = source.with_max_line_bytes(max);
    }
    let report = match run(&SNAPSHOT, source, &opts) {
        Ok(report) => report,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let e = report
        .experiment("checkout")
        .expect("the experiment is simulated");
    let not_enrolled: u64 = e.not_enrolled.0.iter().map(|(_, c)| c).sum();
    assert_eq!(
        e.enrolled + not_enrolled,
        report.units,
        "every unit is counted once"
    );
    assert_eq!(e.variants.iter().map(|v| v.count).sum::<u64>(), e.enrolled);
    if !skip_bad_lines {
        assert_eq!(report.skipped_lines.count, 0);
    }
    if !csv && !body.starts_with(&[0x1f, 0x8b]) {
        // Plain text: one unit or one skipped line per line (a last line may lack its '\n'),
        // overlong lines included.
        let lines = body.split(|&b| b == b'\n').count()
            - usize::from(body.ends_with(b"\n") || body.is_empty());
        assert_eq!(
            report.units + report.skipped_lines.count,
            lines as u64,
            "lines vs units + skipped"
        );
    }
    let _ = (report.to_table(), report.to_json());
});
