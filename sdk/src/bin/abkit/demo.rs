//! `abkit demo`: a guided tour on the embedded demo configuration. Ends by itself in seconds.

use abkit::cli::CliError;
use abkit::{Attribute, Config, Reason, Sdk, Unit};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

mod plugins;

/// The embedded demo configuration.
const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Arguments of `abkit demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Units per experiment in the split check.
    #[arg(long, default_value_t = 200_000)]
    units: u32,
    /// Use prebuilt plugin libraries from this directory instead of building them with cargo
    /// (needs the three `libabkit_strategy_*.so` and `libfixture_biased.so`).
    #[arg(long)]
    plugins_dir: Option<std::path::PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, CliError> {
    let config = Config::from_toml_str(DEMO_CONFIG, "demo.toml (embedded)", Path::new("."))
        .map_err(abkit::Error::from)?;
    let sdk = Sdk::from_config(config)?;
    let snap = sdk.snapshot();
    let n = snap.config().experiments().len();
    println!(
        "== part 1: the built-in bucketer ({n} experiment{} from the embedded demo.toml) ==\n",
        if n == 1 { "" } else { "s" }
    );

    println!("-- single assignments (variant, reason, strategy) --");
    let us: &[Attribute<'_>] = &[Attribute::new("country", "US")];
    let fr: &[Attribute<'_>] = &[Attribute::new("country", "FR")];
    let cases: [(&str, Unit<'_>); 8] = [
        ("checkout_button", Unit::new("user-1").with_attributes(us)),
        ("checkout_button", Unit::new("user-2").with_attributes(us)),
        ("checkout_button", Unit::new("user-3").with_attributes(fr)),
        ("checkout_button", Unit::new("qa-user-1")),
        ("search_ranking", Unit::new("user-1")),
        ("price_banner", Unit::new("user-1")),
        ("free_shipping", Unit::new("user-1")),
        ("old_onboarding", Unit::new("user-1")),
    ];
    for (exp, unit) in &cases {
        let a = sdk.assign(exp, unit);
        let attrs: Vec<String> = unit
            .attributes()
            .iter()
            .map(|a| format!("{}={}", a.key, a.value))
            .collect();
        println!(
            "  {exp:<16} {:<10} {:<11} -> {:<9} ({}, {})",
            unit.id(),
            attrs.join(","),
            a.variant_name().unwrap_or("-"),
            a.reason,
            a.decided_by
        );
    }

    println!(
        "\n-- split over {} synthetic units per experiment (observed vs expected share) --",
        args.units
    );
    let attrs: &[Attribute<'_>] = &[Attribute::new("country", "CA")];
    let mut id = String::new();
    for e in snap.config().experiments() {
        let mut counts = vec![0u64; e.variants().len()];
        let mut not_enrolled = 0u64;
        let mut in_both_layer_experiments = 0u64;
        for i in 0..args.units {
            id.clear();
            use std::fmt::Write;
            let _ = write!(id, "unit-{i}");
            let unit = Unit::new(&id).with_attributes(attrs);
            match sdk.assign(e.key(), &unit).variant {
                Some(v) => counts[v.index as usize] += 1,
                None => not_enrolled += 1,
            }
            if e.key() == "price_banner"
                && sdk.assign("price_banner", &unit).is_enrolled()
                && sdk.assign("free_shipping", &unit).is_enrolled()
            {
                in_both_layer_experiments += 1;
            }
        }
        let total_w: u64 = e.variants().iter().map(|v| u64::from(v.weight)).sum();
        let slice = e
            .layer()
            .map_or(1.0, |s| f64::from(s.end - s.start) / 10_000.0);
        let on = if e.enabled() { 1.0 } else { 0.0 };
        print!("  {:<16}", e.key());
        for (v, c) in e.variants().iter().zip(&counts) {
            let expected = on * slice * e.coverage() * v.weight as f64 / total_w as f64;
            print!(
                " {}={:.2}% (exp {:.2}%)",
                v.name,
                100.0 * *c as f64 / f64::from(args.units),
                100.0 * expected
            );
        }
        println!(
            " not-enrolled={:.2}%",
            100.0 * not_enrolled as f64 / f64::from(args.units)
        );
        if e.key() == "price_banner" {
            println!("  {:<16} units in both price_banner and free_shipping (same layer): {in_both_layer_experiments}", "");
        }
    }

    println!("\n-- speed (single thread, this machine) --");
    let n = 2_000_000u32;
    let ids: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let start = Instant::now();
    let mut enrolled = 0u32;
    for i in 0..n {
        let unit = Unit::new(&ids[(i as usize) & 1023]).with_attributes(us);
        enrolled += u32::from(sdk.assign("checkout_button", &unit).reason == Reason::Assigned);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("  {n} assignments of checkout_button: {ns:.0} ns each ({enrolled} enrolled); see README 'Performance' for the benchmark");
    plugins::run(args.plugins_dir.as_deref())?;
    println!("\ndemo done.");
    Ok(ExitCode::SUCCESS)
}
