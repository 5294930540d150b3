//! The example service under load while ops hot-swap its strategy (issue 14): `wrk` drives
//! `GET /v1/assign` at full speed on loopback, first with nothing changing, then while this
//! process re-signs and swaps plugin artifacts every 200 ms — good new versions, tampered
//! bytes, rollbacks, and a switch to a biased strategy that the guards refuse. Then: zero
//! non-2xx answers, zero connection errors, every variant one of the configured ones, and the
//! final status as expected. `ABKIT_LOAD_SECONDS` sets each phase's length (default 3 s; the
//! README's numbers come from a longer release run: `ABKIT_LOAD_SECONDS=15 cargo test --release
//! -p abkit-tests --test service_load -- --nocapture`). Needs Debian's `wrk` (`.ci/test`
//! installs it).
#![allow(clippy::unwrap_used)]

use abkit_tests::env::{plugin_experiment_toml, TestEnv};
use abkit_tests::fixtures::{fixture, fx, reference, rf, service_binary};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Stops the service when the test ends, however it ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the service on a free loopback port; returns it and its address.
fn start(config: &Path) -> (Service, String) {
    let mut child = Command::new(service_binary())
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let service = Service(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("http://").nth(1).map(str::to_string))
        .expect("the service printed its address");
    // Keep draining the service's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (service, addr)
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked bodies: the JSON is on one chunk line; keep from the first '{' to the last '}'.
    let body = match (body.find(['{', '[']), body.rfind(['}', ']'])) {
        (Some(a), Some(b)) if b >= a => body[a..=b].to_string(),
        _ => body.to_string(),
    };
    (status, body)
}

struct WrkResult {
    requests: u64,
    errors: u64,
    invalid: u64,
    non2xx: u64,
    p50_us: u64,
    p99_us: u64,
    rps: f64,
}

fn wrk(addr: &str, seconds: u64) -> WrkResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("load/assign.lua");
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .expect("the `wrk` tool is needed (apt-get install wrk; .ci/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("ABKIT "))
        .unwrap_or_else(|| panic!("no summary from the wrk script:\n{text}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    let requests = field("requests");
    WrkResult {
        requests,
        errors: field("errors"),
        invalid: field("invalid"),
        non2xx: field("non2xx"),
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
        rps: requests as f64 / seconds as f64,
    }
}

#[track_caller]
fn assert_clean(what: &str, r: &WrkResult) {
    assert!(r.requests > 0, "{what}: no requests");
    assert_eq!(r.non2xx, 0, "{what}: non-2xx answers");
    assert_eq!(r.errors, 0, "{what}: connection or protocol errors");
    assert_eq!(r.invalid, 0, "{what}: answers without a configured variant");
}

fn flip_a_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let tmp = file.with_extension("flip");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, file).unwrap();
}

#[test]
fn assign_under_load_while_plugins_are_swapped_every_200_ms() {
    let seconds: u64 = std::env::var("ABKIT_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let env = TestEnv::new();
    let wh = env.stripped(&reference(rf::WEIGHTED_HASH), "wh");
    let biased = env.install(&fixture(fx::BIASED), "plugins/biased.so", "biased", 1);
    let lib = env.install(&wh, "plugins/wh.so", "weighted-hash", 1);
    let biased_decl = format!(
        "[[plugins]]\nname = \"biased\"\npath = {}\n\n",
        abkit_tests::toml_string(&biased.display().to_string())
    );
    let good = format!(
        "{biased_decl}{}",
        plugin_experiment_toml("weighted-hash", &lib, None)
    );
    let switched = good.replace(
        "strategy = \"plugin:weighted-hash\"",
        "strategy = \"plugin:biased\"",
    );
    let config = env.write_config(&good, true);
    let write_config = |body: &str| {
        let tmp = env.path("abkit.toml.new");
        std::fs::write(&tmp, format!("{}\n{body}", env.trust_toml(true))).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };

    let (service, addr) = start(&config);
    assert_eq!(get(&addr, "/healthz").0, 200);
    let (code, ready) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("\"ready\":true"), "{ready}");

    // Phase 1: nothing changes.
    let quiet = wrk(&addr, seconds);
    assert_clean("without swaps", &quiet);

    // Phase 2: ops swap artifacts every 200 ms while the load runs.
    let stop = AtomicBool::new(false);
    let (swapped, during) = std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut version = 1u64;
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match swaps % 5 {
                    // A good new version, re-signed over the same path.
                    0 | 3 => {
                        version += 1;
                        env.install(&wh, "plugins/wh.so", "weighted-hash", version);
                    }
                    // One byte flipped after signing: refused, the last good keeps serving.
                    1 => flip_a_byte(&lib),
                    // An older version: refused as a rollback.
                    2 => {
                        env.install(
                            &wh,
                            "plugins/wh.so",
                            "weighted-hash",
                            version.saturating_sub(1),
                        );
                    }
                    // The experiment switched to a skewed strategy: refused by the guards.
                    _ => write_config(&switched),
                }
                swaps += 1;
                std::thread::sleep(Duration::from_millis(200));
                if swaps % 5 == 0 {
                    write_config(&good);
                }
            }
            (swaps, version)
        });
        let during = wrk(&addr, seconds);
        stop.store(true, Ordering::Relaxed);
        (swapper.join().unwrap(), during)
    });
    assert_clean("during swaps", &during);
    let (swaps, version) = swapped;
    assert!(swaps >= 5, "only {swaps} swaps");

    // The final state: a last good version deployed, the service converges on it.
    let last = version + 1;
    write_config(&good);
    env.install(&wh, "plugins/wh.so", "weighted-hash", last);
    let mut status = String::new();
    for _ in 0..150 {
        std::thread::sleep(Duration::from_millis(100));
        status = get(&addr, "/v1/status").1;
        let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        let serving = &v["plugins"][0]["serving"]["version"];
        if v["plugins"][0]["state"] == "active" && serving == last {
            break;
        }
    }
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let wh_status = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "weighted-hash")
        .unwrap();
    assert_eq!(wh_status["state"], "active", "{status}");
    assert_eq!(wh_status["serving"]["version"], last, "{status}");
    assert!(v["generation"].as_u64().unwrap() > 1, "{status}");
    let (_, a) = get(&addr, "/v1/assign?experiment=exp&unit=user-1");
    assert!(a.contains(&format!("plugin:weighted-hash v{last}")), "{a}");
    let metrics = get(&addr, "/metrics").1;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/assign\""), "{metrics}");

    eprintln!(
        "service load, {seconds} s per phase: without swaps {:.0} req/s, p50 {} µs, p99 {} µs; \
         with a swap every 200 ms ({swaps} swaps) {:.0} req/s, p50 {} µs, p99 {} µs; \
         p99 ratio {:.2}",
        quiet.rps,
        quiet.p50_us,
        quiet.p99_us,
        during.rps,
        during.p50_us,
        during.p99_us,
        during.p99_us as f64 / quiet.p99_us.max(1) as f64
    );

    // Graceful shutdown on SIGTERM.
    let mut service = service;
    let pid = service.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = service.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "no graceful exit on SIGTERM"
    );
}

/// Bad input gets a 4xx with a JSON error, never a panic or a 5xx.
#[test]
fn bad_requests_get_a_4xx_that_says_what_was_wrong() {
    let env = TestEnv::new();
    let config = env.write_config(
        "[[experiments]]\nkey = \"exp\"\nvariants = [ { name = \"control\", weight = 50 }, { name = \"treatment\", weight = 50 } ]\n",
        false,
    );
    let (_service, addr) = start(&config);
    let post = |body: &[u8]| -> (u16, String) {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /v1/assign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    };
    for (path, code, says) in [
        ("/v1/assign?experiment=exp", 400, "missing `unit`"),
        ("/v1/assign?unit=u", 400, "missing `experiment`"),
        (
            "/v1/assign?experiment=nope&unit=u",
            404,
            "unknown experiment",
        ),
        (
            "/v1/assign?experiment=exp&unit=u&color=red",
            400,
            "unknown query parameter",
        ),
        (
            "/v1/assign?experiment=exp&unit=%FF",
            400,
            "bad query string",
        ),
    ] {
        let (status, body) = get(&addr, path);
        assert_eq!(status, code, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let (status, body) = get(&addr, "/v1/assign?experiment=exp&unit=u&attr.country=US");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"experiment\":\"exp\""), "{body}");
    let (status, text) = post(b"{not json");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("error"), "{text}");
    let (status, text) = post(b"{\"unit\": \"u\", \"experiments\": [\"exp\", \"exp\"]}");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("\"variant\"").count(), 2, "{text}");
    let many: Vec<String> = (0..1001)
        .map(|i| format!("{{\"unit\": \"u{i}\"}}"))
        .collect();
    let big = format!(
        "{{\"experiment\": \"exp\", \"units\": [{}]}}",
        many.join(",")
    );
    let (status, text) = post(big.as_bytes());
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most 1000"), "{text}");
    let (status, text) = post(&[0xff, 0xfe, b'{']);
    assert_eq!(status, 400, "{text}");
    assert_eq!(get(&addr, "/readyz").0, 200);
    assert_eq!(get(&addr, "/v1/status").0, 200);
}
