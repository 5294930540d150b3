//! etcd as the configuration source, against a real etcd on loopback (`abkit_tests::etcd`):
//! a fleet converges on a published change (the time is measured and printed), survives etcd
//! being killed and restarted, frozen, and a compaction during its watch, refuses a bad
//! document (invalid, naming missing files, the key deleted) on every instance, serves a signed
//! plugin only where its files are deployed, talks TLS and auth, and `abkit publish` detects a
//! compare-and-swap conflict; the tool and the example service read etcd too.
//!
//! `cargo test -p abkit-tests --test etcd -- --nocapture` prints the convergence times.
#![allow(clippy::unwrap_used)]

use abkit::source::etcd::{self, EtcdOptions, EtcdWatchHandle};
use abkit::source::{Backoff, WatchHealth};
use abkit::{Reason, Sdk, Unit};
use abkit_tests::etcd::Etcd;
use abkit_tests::fixtures::abkit_binary;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous bound of every wait: a debug build on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);

const KEY: &str = "/abkit/config";

/// A document with experiment `e` and, when `extra` is given, a second experiment of that key.
fn doc(extra: Option<&str>) -> String {
    let mut text = String::from(
        "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"control\", weight = 50 }, { name = \"treatment\", weight = 50 } ]\n",
    );
    if let Some(key) = extra {
        text.push_str(&format!(
            "\n[[experiments]]\nkey = \"{key}\"\nvariants = [ {{ name = \"a\", weight = 1 }}, {{ name = \"b\", weight = 1 }} ]\n"
        ));
    }
    text
}

/// Options for a test instance: quick backoff and confirmations, a state dir of its own.
fn options(etcd: &Etcd, state_dir: Option<&Path>) -> EtcdOptions {
    let mut o = EtcdOptions::new([etcd.endpoint()], KEY);
    o.state_dir = state_dir.map(Path::to_path_buf);
    o.connect_timeout = Duration::from_secs(2);
    o.request_timeout = Duration::from_secs(2);
    o.confirm_interval = Duration::from_millis(500);
    o.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(800),
    };
    o
}

struct Instance {
    sdk: Arc<Sdk>,
    _watch: EtcdWatchHandle,
    _state: tempfile::TempDir,
}

async fn instance(etcd: &Etcd) -> Instance {
    let state = tempfile::tempdir().unwrap();
    let opts = options(etcd, Some(state.path()));
    let sdk = Arc::new(Sdk::builder().build_from_etcd(&opts).await.unwrap());
    let watch = etcd::watch(Arc::clone(&sdk), opts).unwrap();
    Instance {
        sdk,
        _watch: watch,
        _state: state,
    }
}

async fn fleet(etcd: &Etcd, n: usize) -> Vec<Instance> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(instance(etcd).await);
    }
    wait_until("every instance's watch is healthy", || {
        v.iter()
            .all(|i| watch_state(&i.sdk) == WatchHealth::Healthy)
    })
    .await;
    v
}

fn watch_state(sdk: &Sdk) -> WatchHealth {
    sdk.source_status().unwrap().watch.state
}

fn revision(sdk: &Sdk) -> Option<i64> {
    sdk.source_status().unwrap().revision
}

fn knows(sdk: &Sdk, experiment: &str) -> bool {
    sdk.assign(experiment, &Unit::new("u-1")).reason != Reason::UnknownExperiment
}

/// Polls `done` every millisecond until it holds; fails the test after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Publishes through the library's compare-and-swap on the current revision.
async fn publish(etcd: &Etcd, text: &str) -> i64 {
    let opts = options(etcd, None);
    let current = etcd::current(&opts)
        .await
        .unwrap()
        .map_or(0, |d| d.revision);
    etcd::publish(&opts, text, current).await.unwrap()
}

/// A raw write that bypasses `publish`'s checks (what a careless operator could do).
async fn raw_put(etcd: &Etcd, key: &str, value: &str) -> i64 {
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let resp = client.put(key, value, None).await.unwrap();
    resp.header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_instances_converge_on_a_published_change() {
    let etcd = Etcd::start();
    let first = publish(&etcd, &doc(None)).await;
    let fleet = fleet(&etcd, 5).await;
    assert!(fleet.iter().all(|i| revision(&i.sdk) == Some(first)));
    let mut times = Vec::new();
    for round in 0..5 {
        let experiment = format!("new_{round}");
        let started = Instant::now();
        let published = publish(&etcd, &doc(Some(&experiment))).await;
        wait_until("all five instances serve the published change", || {
            fleet.iter().all(|i| knows(&i.sdk, &experiment))
        })
        .await;
        let took = started.elapsed();
        times.push(took);
        // The source status follows the snapshot right after the reload returns.
        wait_until("every instance reports the published revision", || {
            fleet.iter().all(|i| revision(&i.sdk) == Some(published))
        })
        .await;
        for i in &fleet {
            let report = i.sdk.last_reload().unwrap();
            assert!(report.accepted && report.trigger == "etcd", "{report}");
        }
        println!(
            "etcd convergence, round {round}: 5 instances serve revision {published} {:.1} ms after the publish started",
            took.as_secs_f64() * 1000.0
        );
    }
    times.sort();
    println!(
        "etcd convergence of 5 instances over {} publishes: median {:.1} ms, max {:.1} ms (from the start of the publish to the last instance serving it)",
        times.len(),
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_and_restarted_while_instances_serve() {
    let mut etcd = Etcd::start();
    let first = publish(&etcd, &doc(None)).await;
    let fleet = fleet(&etcd, 3).await;

    // Assign continuously on threads of their own for the whole outage: no answer may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = fleet
        .iter()
        .map(|i| {
            let (sdk, stop) = (Arc::clone(&i.sdk), Arc::clone(&stop));
            let (calls, failures) = (Arc::clone(&calls), Arc::clone(&failures));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("user-{n}");
                    let a = sdk.assign("e", &Unit::new(&id));
                    if a.reason != Reason::Assigned || a.variant.is_none() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    if n % 1000 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();

    etcd.kill();
    wait_until("every instance reports its watch broken", || {
        fleet
            .iter()
            .all(|i| watch_state(&i.sdk) == WatchHealth::Broken)
    })
    .await;
    for i in &fleet {
        let s = i.sdk.source_status().unwrap();
        assert_eq!(s.revision, Some(first), "keeps serving what it had");
        assert!(s.watch.why.is_some(), "{s:?}");
        // Readiness: stale once etcd has not confirmed it for longer than the threshold.
        let later = s.last_confirmed_unix_ms.unwrap() + 60_000;
        let why = s.stale_reason(later, Duration::from_secs(30)).unwrap();
        assert!(why.contains("the watch is broken"), "{why}");
    }

    // A start while etcd is down: from the local copy if there is one, else a clear error.
    let copy_dir = tempfile::tempdir().unwrap();
    {
        // The first instance's state dir holds its copy; give a newcomer the same file.
        let opts = options(&etcd, Some(copy_dir.path()));
        let err = Sdk::builder()
            .build_from_etcd(&opts)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no local copy") || err.contains("none in"),
            "{err}"
        );
        let err = Sdk::builder()
            .build_from_etcd(&options(&etcd, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot reach etcd") && err.contains("no state directory is configured"),
            "{err}"
        );
    }
    let source = fleet[0]._state.path();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy_dir.path().join(entry.file_name())).unwrap();
    }
    let opts = options(&etcd, Some(copy_dir.path()));
    let late = Arc::new(Sdk::builder().build_from_etcd(&opts).await.unwrap());
    let s = late.source_status().unwrap();
    assert!(
        s.from_local_copy && s.revision == Some(first) && s.last_confirmed_unix_ms.is_none(),
        "{s:?}"
    );
    assert!(knows(&late, "e"));
    let _late_watch = etcd::watch(Arc::clone(&late), opts).unwrap();

    etcd.restart();
    wait_until("every instance reconnects", || {
        fleet.iter().all(|i| {
            let s = i.sdk.source_status().unwrap();
            s.watch.state == WatchHealth::Healthy && s.reconnects >= 1
        }) && watch_state(&late) == WatchHealth::Healthy
    })
    .await;
    let s = late.source_status().unwrap();
    assert!(
        !s.from_local_copy && s.last_confirmed_unix_ms.is_some(),
        "{s:?}"
    );

    let second = publish(&etcd, &doc(Some("after_restart"))).await;
    wait_until(
        "every instance serves the change published after the restart",
        || {
            fleet
                .iter()
                .all(|i| knows(&i.sdk, "after_restart") && revision(&i.sdk) == Some(second))
                && knows(&late, "after_restart")
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (calls, failures) = (
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    println!("assignments during the outage and reconnection: {calls}, failed: {failures}");
    assert!(calls > 0);
    assert_eq!(failures, 0, "an assignment failed while etcd was down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_etcd_is_reported_as_a_broken_watch_not_as_healthy() {
    let etcd = Etcd::start();
    let first = publish(&etcd, &doc(None)).await;
    let fleet = fleet(&etcd, 2).await;
    // Frozen, not dead: the connections stay open and silent. The progress requests go
    // unanswered, so each instance must say its watch is broken instead of looking healthy.
    etcd.pause();
    wait_until("every instance reports the silent watch broken", || {
        fleet
            .iter()
            .all(|i| watch_state(&i.sdk) == WatchHealth::Broken)
    })
    .await;
    for i in &fleet {
        let s = i.sdk.source_status().unwrap();
        assert_eq!(s.revision, Some(first));
        assert!(i.sdk.status().to_string().contains("watch BROKEN"));
        assert_eq!(i.sdk.assign("e", &Unit::new("u")).reason, Reason::Assigned);
    }
    etcd.resume();
    wait_until("every instance's watch is healthy again", || {
        fleet
            .iter()
            .all(|i| watch_state(&i.sdk) == WatchHealth::Healthy)
    })
    .await;
    let next = publish(&etcd, &doc(Some("after_thaw"))).await;
    wait_until(
        "every instance serves the change published after the thaw",
        || {
            fleet
                .iter()
                .all(|i| knows(&i.sdk, "after_thaw") && revision(&i.sdk) == Some(next))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_during_a_watch_is_survived() {
    let etcd = Etcd::start();
    publish(&etcd, &doc(None)).await;
    let state = tempfile::tempdir().unwrap();
    let opts = options(&etcd, Some(state.path()));
    // The instance reads revision r; before its watch starts, the key changes and history up
    // to the latest revision is compacted: the watch from r+1 is cancelled by compaction.
    let sdk = Arc::new(Sdk::builder().build_from_etcd(&opts).await.unwrap());
    let missed = publish(&etcd, &doc(Some("missed"))).await;
    let mut last = 0;
    for i in 0..5 {
        last = raw_put(&etcd, "/other", &i.to_string()).await;
    }
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    client.compact(last, None).await.unwrap();
    let _watch = etcd::watch(Arc::clone(&sdk), opts).unwrap();
    wait_until("the instance re-reads the key after the compaction", || {
        knows(&sdk, "missed") && revision(&sdk) == Some(missed)
    })
    .await;
    let s = sdk.source_status().unwrap();
    assert_eq!(s.revision, Some(missed));
    assert_eq!(s.compactions, 1, "{s:?}");
    wait_until("the watch is healthy again", || {
        watch_state(&sdk) == WatchHealth::Healthy
    })
    .await;

    // A compaction while the watch runs (and is current) does not disturb it.
    let latest = raw_put(&etcd, "/other", "x").await;
    client.compact(latest, None).await.unwrap();
    let next = publish(&etcd, &doc(Some("after_compaction"))).await;
    wait_until("the instance serves the next change", || {
        knows(&sdk, "after_compaction") && revision(&sdk) == Some(next)
    })
    .await;
    let s = sdk.source_status().unwrap();
    assert_eq!(s.revision, Some(next));
    // Never retried the compacted revision: one cancellation in all.
    assert_eq!(s.compactions, 1, "{s:?}");
    assert_eq!(s.watch.state, WatchHealth::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_document_is_refused_by_all() {
    let etcd = Etcd::start();
    let good = publish(&etcd, &doc(None)).await;
    let fleet = fleet(&etcd, 3).await;
    let generation: Vec<u64> = fleet.iter().map(|i| i.sdk.status().generation).collect();

    // Invalid TOML, written around `publish`: every instance refuses it and keeps serving.
    let bad = raw_put(&etcd, KEY, "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"control\", weight = 0 } ]\ncolour = 3\n").await;
    wait_until("every instance refuses the invalid document", || {
        fleet
            .iter()
            .all(|i| i.sdk.source_status().unwrap().refused_revision == Some(bad))
    })
    .await;
    for (i, generation) in fleet.iter().zip(&generation) {
        let status = i.sdk.status();
        assert_eq!(status.generation, *generation, "the snapshot is kept");
        assert_eq!(status.source.as_ref().unwrap().revision, Some(good));
        let report = status.last_reload.as_ref().unwrap();
        let refusal = report.refusal.as_ref().unwrap();
        assert_eq!(refusal.reason, abkit::RefusalReason::InvalidConfig);
        assert!(
            refusal.message.contains(&format!("revision {bad}"))
                && refusal.message.contains("colour"),
            "{}",
            refusal.message
        );
        assert!(
            status
                .to_string()
                .contains(&format!("revision {bad} was refused")),
            "{status}"
        );
        assert_eq!(i.sdk.assign("e", &Unit::new("u")).reason, Reason::Assigned);
    }

    // A document naming a plugin file this host does not have: refused, naming the file.
    let missing = raw_put(
        &etcd,
        KEY,
        &format!(
            "[trust]\ndanger_allow_unsigned = true\n\n[[plugins]]\nname = \"absent\"\npath = \"/nonexistent/abkit/libabsent.so\"\n\n{}",
            doc(None)
        ),
    )
    .await;
    wait_until(
        "every instance refuses the document naming a missing file",
        || {
            fleet
                .iter()
                .all(|i| i.sdk.source_status().unwrap().refused_revision == Some(missing))
        },
    )
    .await;
    for i in &fleet {
        let report = i.sdk.last_reload().unwrap();
        let refusal = report.refusal.as_ref().unwrap();
        assert_eq!(refusal.reason, abkit::RefusalReason::MissingFile);
        assert!(
            refusal
                .message
                .contains("/nonexistent/abkit/libabsent.so does not exist"),
            "{}",
            refusal.message
        );
        assert_eq!(revision(&i.sdk), Some(good));
    }

    // `abkit publish` refuses an invalid document before writing anything.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[[experiments]]\nkey = \"e\"\nvariants = []\n").unwrap();
    let out = publish_cli(&etcd, &file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was written"), "{}", text(&out));
    let now = etcd::current(&options(&etcd, None)).await.unwrap().unwrap();
    assert_eq!(now.revision, missing, "publish wrote nothing");

    // A good document again: every instance accepts it and the refusal clears.
    let fixed = publish(&etcd, &doc(Some("fixed"))).await;
    wait_until("every instance serves the fixed document", || {
        fleet
            .iter()
            .all(|i| knows(&i.sdk, "fixed") && revision(&i.sdk) == Some(fixed))
    })
    .await;
    for i in &fleet {
        let s = i.sdk.source_status().unwrap();
        assert_eq!((s.revision, s.refused_revision), (Some(fixed), None));
    }

    // The key deleted: refused (the last document keeps serving) until it is published again.
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let deleted = client
        .delete(KEY, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    wait_until("every instance refuses the deletion", || {
        fleet
            .iter()
            .all(|i| i.sdk.source_status().unwrap().refused_revision == Some(deleted))
    })
    .await;
    for i in &fleet {
        let report = i.sdk.last_reload().unwrap();
        assert_eq!(
            report.refusal.as_ref().unwrap().reason,
            abkit::RefusalReason::KeyDeleted
        );
        assert!(knows(&i.sdk, "fixed"));
    }
    let again = publish(&etcd, &doc(Some("again"))).await;
    wait_until(
        "every instance serves the document published after the deletion",
        || {
            fleet
                .iter()
                .all(|i| knows(&i.sdk, "again") && revision(&i.sdk) == Some(again))
        },
    )
    .await;
}

fn publish_cli(etcd: &Etcd, config: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(abkit_binary())
        .arg("publish")
        .arg("--config")
        .arg(config)
        .args(["--etcd-endpoints", &etcd.endpoint(), "--etcd-key", KEY])
        .args(extra)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_detects_a_compare_and_swap_conflict() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    std::fs::write(&a, doc(None)).unwrap();
    std::fs::write(&b, doc(Some("b"))).unwrap();
    let current = || async {
        etcd::current(&options(&etcd, None))
            .await
            .unwrap()
            .map(|d| d.revision)
    };

    // 0: only if the key does not exist yet.
    let out = publish_cli(&etcd, &a, &["--if-revision", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r1 = current().await.unwrap();
    assert!(
        text(&out).contains(&format!("revision {r1}")),
        "{}",
        text(&out)
    );

    // A second operator who also thought the key was new: a conflict naming both revisions.
    let out = publish_cli(&etcd, &b, &["--if-revision", "0"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("at revision {r1}, not 0")),
        "{}",
        text(&out)
    );
    assert_eq!(current().await, Some(r1), "nothing was written");

    // The first operator publishes on top of what they read ...
    let out = publish_cli(&etcd, &b, &["--if-revision", &r1.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r2 = current().await.unwrap();
    assert!(r2 > r1);
    // ... and the other, still at r1, is refused, with both revisions named.
    let out = publish_cli(&etcd, &a, &["--if-revision", &r1.to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains(&format!("at revision {r2}, not {r1}"))
            && message.contains(&format!("--if-revision {r2}")),
        "{message}"
    );
    assert_eq!(current().await, Some(r2));

    // The library's compare-and-swap catches a write between the read and the write, too.
    let opts = options(&etcd, None);
    match etcd::publish(&opts, &doc(None), r1).await {
        Err(etcd::EtcdError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // --dry-run shows what would change and writes nothing.
    let out = publish_cli(&etcd, &a, &["--dry-run", "--synthetic", "2000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("dry run") && text(&out).contains("removed"),
        "{}",
        text(&out)
    );
    assert_eq!(current().await, Some(r2));

    // A document over etcd's request limit is refused before anything is sent.
    let big = dir.path().join("big.toml");
    let mut body = doc(None);
    while body.len() < 1_600_000 {
        body.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, body).unwrap();
    let out = publish_cli(&etcd, &big, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("max-request-bytes"), "{}", text(&out));
    assert_eq!(current().await, Some(r2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_files_are_deployed_per_host_and_a_host_missing_them_refuses_the_document() {
    use abkit::DecidedBy;
    use abkit_tests::env::TestEnv;
    use abkit_tests::fixtures::{reference, rf};

    let etcd = Etcd::start();
    let env = TestEnv::new();
    let library = reference(rf::WEIGHTED_HASH);
    // Two hosts: each resolves the document's relative paths against its own directory.
    let (host_a, host_b) = (env.path("host-a"), env.path("host-b"));
    for host in [&host_a, &host_b] {
        std::fs::create_dir_all(host.join("keys")).unwrap();
        std::fs::copy(&env.pubkey, host.join("keys/release.pub")).unwrap();
    }
    env.install(&library, "host-a/plugins/libwh-v1.so", "weighted-hash", 1);
    publish(&etcd, &doc(None)).await;
    let start = |host: std::path::PathBuf| {
        let mut o = options(&etcd, None);
        o.base_dir = host;
        async move {
            let sdk = Arc::new(Sdk::builder().build_from_etcd(&o).await.unwrap());
            let watch = etcd::watch(Arc::clone(&sdk), o).unwrap();
            (sdk, watch)
        }
    };
    let (a, _watch_a) = start(host_a.clone()).await;
    let (b, watch_b) = start(host_b.clone()).await;

    let with_plugin = format!(
        "[trust]\npublic_key_files = [\"keys/release.pub\"]\n\n[[plugins]]\nname = \"weighted-hash\"\npath = \"plugins/libwh-v1.so\"\n\n{}\n[[experiments]]\nkey = \"exp\"\nstrategy = \"plugin:weighted-hash\"\nvariants = [ {{ name = \"control\", weight = 50 }}, {{ name = \"treatment\", weight = 50 }} ]\n",
        doc(None)
    );
    let first = publish(&etcd, &with_plugin).await;
    wait_until(
        "host A serves the plugin, host B refuses the document",
        || {
            revision(&a) == Some(first)
                && b.source_status().unwrap().refused_revision == Some(first)
        },
    )
    .await;
    let served = a.assign("exp", &Unit::new("user-1"));
    assert!(
        matches!(served.decided_by, DecidedBy::Plugin(p) if p.name == "weighted-hash"),
        "{served:?}"
    );
    let report = b.last_reload().unwrap();
    let refusal = report.refusal.as_ref().unwrap();
    assert_eq!(refusal.reason, abkit::RefusalReason::MissingFile);
    let expected = host_b.join("plugins/libwh-v1.so");
    assert!(
        refusal
            .message
            .contains(&format!("{} does not exist", expected.display())),
        "{}",
        refusal.message
    );
    assert!(!knows(&b, "exp"), "host B keeps its snapshot");

    // The deploy tooling reaches host B; a reload on demand (SIGHUP for `abkit watch`)
    // retries the refused revision there, without a new publish.
    env.install(&library, "host-b/plugins/libwh-v1.so", "weighted-hash", 1);
    watch_b.reload();
    wait_until("host B serves the plugin after its deploy", || {
        revision(&b) == Some(first)
    })
    .await;
    assert_eq!(b.last_reload().unwrap().trigger, "resync");
    let served = b.assign("exp", &Unit::new("user-1"));
    assert!(
        matches!(served.decided_by, DecidedBy::Plugin(p) if p.name == "weighted-hash"),
        "{served:?}"
    );
    assert_eq!(b.source_status().unwrap().refused_revision, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_reads_status_and_watches_through_etcd() {
    use std::io::BufRead;
    let mut etcd = Etcd::start();
    let first = publish(&etcd, &doc(None)).await;
    let state = tempfile::tempdir().unwrap();
    let endpoint = etcd.endpoint();
    let etcd_args = |extra: &[&str]| {
        let mut args = vec!["--etcd-endpoints", endpoint.as_str(), "--etcd-key", KEY];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let state_arg = state.path().to_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        std::process::Command::new(abkit_binary())
            .args(args)
            .output()
            .unwrap()
    };

    // status --json: the source section names the revision serving.
    let mut args = vec!["status".to_string(), "--json".to_string()];
    args.extend(etcd_args(&["--state-dir", &state_arg]));
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["source"]["kind"], "etcd");
    assert_eq!(status["source"]["revision"], first);
    assert_eq!(status["source"]["key"], KEY);

    // assign reads the same document.
    let mut args = vec![
        "assign".to_string(),
        "--experiment".into(),
        "e".into(),
        "--unit".into(),
        "u-1".into(),
    ];
    args.extend(etcd_args(&[]));
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        matches!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "control" | "treatment"
        ),
        "{}",
        text(&out)
    );

    // watch --json prints a report for every published change.
    let mut args = vec![
        "watch".to_string(),
        "--json".into(),
        "--for".into(),
        "60".into(),
    ];
    args.extend(etcd_args(&[]));
    let mut child = std::process::Command::new(abkit_binary())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        rx.recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("abkit watch printed no {what} in time"))
    };
    next_line("status");
    assert!(next_line("watching line").contains("\"etcd\""));
    // No wait needed: the watch starts from the revision its start read (+1).
    let second = publish(&etcd, &doc(Some("from_watch"))).await;
    let report: serde_json::Value = serde_json::from_str(&next_line("reload report")).unwrap();
    assert_eq!(report["trigger"], "etcd");
    assert_eq!(report["accepted"], true);
    // SIGHUP: re-read the key and reload.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let report: serde_json::Value = serde_json::from_str(&next_line("SIGHUP report")).unwrap();
    assert_eq!(report["trigger"], "resync");
    assert_eq!(report["accepted"], true);
    let _ = child.kill();
    let _ = child.wait();

    // etcd down: status starts from the local copy; --strict says it is not confirmed current.
    etcd.kill();
    let mut args = vec!["status".to_string(), "--strict".into()];
    args.extend(etcd_args(&[
        "--state-dir",
        &state_arg,
        "--etcd-timeout-ms",
        "500",
    ]));
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("from the local copy") && message.contains("never confirmed current"),
        "{message}"
    );
    // The copy is the document `status` last read (the watch ran without a state dir).
    assert!(message.contains(&format!("revision {first}")), "{message}");
    assert!(second > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    use abkit::source::etcd::EtcdTls;
    let etcd = Etcd::start_tls();
    let files = etcd.tls_files().unwrap().clone();
    let mut opts = options(&etcd, None);
    opts.tls = Some(EtcdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
        domain: None,
    });
    // The first request may reach etcd before it serves: retry, bounded.
    let started = Instant::now();
    let published = loop {
        match etcd::publish(&opts, &doc(None), 0).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(started.elapsed() < WAIT, "publish over TLS: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let sdk = Sdk::builder().build_from_etcd(&opts).await.unwrap();
    assert_eq!(revision(&sdk), Some(published));

    // Without the client certificate etcd refuses; without TLS options the client cannot talk
    // to an https endpoint: both fail clearly, neither serves.
    let mut no_cert = opts.clone();
    no_cert.tls = Some(EtcdTls {
        ca_file: Some(files.ca.clone()),
        ..EtcdTls::default()
    });
    let err = Sdk::builder()
        .build_from_etcd(&no_cert)
        .await
        .unwrap_err()
        .to_string();
    println!("without a client certificate: {err}");
    assert!(
        err.contains("cannot reach etcd") && err.contains("--etcd-cert"),
        "{err}"
    );
    let mut half = opts.clone();
    half.tls = Some(EtcdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        ..EtcdTls::default()
    });
    let err = Sdk::builder()
        .build_from_etcd(&half)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs both the certificate and its key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_with_user_and_password() {
    use abkit::source::etcd::EtcdAuth;
    let etcd = Etcd::start();
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    client.role_add("root").await.unwrap();
    client.user_add("root", "root-secret", None).await.unwrap();
    client.user_grant_role("root", "root").await.unwrap();
    client.auth_enable().await.unwrap();

    let mut opts = options(&etcd, None);
    opts.auth = Some(EtcdAuth {
        user: "root".into(),
        password: "root-secret".into(),
    });
    let published = etcd::publish(&opts, &doc(None), 0).await.unwrap();
    let sdk = Arc::new(Sdk::builder().build_from_etcd(&opts).await.unwrap());
    assert_eq!(revision(&sdk), Some(published));
    let _watch = etcd::watch(Arc::clone(&sdk), opts.clone()).unwrap();
    let next = etcd::publish(&opts, &doc(Some("authed")), published)
        .await
        .unwrap();
    wait_until("the authenticated watch delivers the change", || {
        knows(&sdk, "authed") && revision(&sdk) == Some(next)
    })
    .await;

    // A wrong password is refused by etcd, and the error says the read failed.
    let mut wrong = opts.clone();
    wrong.auth = Some(EtcdAuth {
        user: "root".into(),
        password: "nope".into(),
    });
    let err = Sdk::builder()
        .build_from_etcd(&wrong)
        .await
        .unwrap_err()
        .to_string();
    println!("with a wrong password: {err}");
    assert!(
        err.contains("refused access")
            && err.contains("ABKIT_ETCD_PASSWORD")
            && !err.contains("nope"),
        "{err}"
    );
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_is_not_ready_while_its_etcd_source_is_stale() {
    use abkit_tests::fixtures::service_binary;
    use std::io::BufRead;
    let etcd = Etcd::start();
    publish(&etcd, &doc(None)).await;
    let mut child = std::process::Command::new(service_binary())
        .args(["--listen", "127.0.0.1:0", "--max-staleness", "2"])
        .args(["--etcd-endpoints", &etcd.endpoint(), "--etcd-key", KEY])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok);
    let addr = lines
        .by_ref()
        .find_map(|l| l.split("http://").nth(1).map(str::to_string))
        .unwrap_or_else(|| {
            panic!("the service did not start on etcd (built without the `etcd` feature?)")
        });
    std::thread::spawn(move || for _ in lines {});
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _service = Kill(child);

    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"kind\":\"etcd\""), "{body}");
    let (code, body) = http_get(&addr, "/v1/assign?experiment=e&unit=u-1");
    assert_eq!(code, 200, "{body}");

    // etcd frozen: the service keeps answering, and its readiness turns 503 once etcd has not
    // confirmed the configuration current for --max-staleness.
    etcd.pause();
    let started = Instant::now();
    loop {
        let (code, body) = http_get(&addr, "/readyz");
        if code == 503 {
            assert!(body.contains("last confirmed current"), "{body}");
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "/readyz stayed {code} while etcd was frozen: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = http_get(&addr, "/v1/assign?experiment=e&unit=u-1");
    assert_eq!(code, 200, "assignments go on while stale: {body}");
    etcd.resume();
    let started = Instant::now();
    while http_get(&addr, "/readyz").0 != 200 {
        assert!(
            started.elapsed() < WAIT,
            "/readyz did not recover after etcd came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
