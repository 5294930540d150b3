//! `abkit watch`: serve a configuration as a service would, and print every reload as it
//! happens — triggered by edits of the configuration, plugin or signature files, or SIGHUP.
//!
//! Output: the initial status, a line naming what is watched, then one report per reload.
//! With `--json` every stdout line is one JSON object: the status, then
//! `{"watching": {"files": [...], "debounce_ms": N, "sighup": true}}`, then the reports.
//! Runs until Ctrl-C or SIGTERM, or for `--for` seconds.

use super::CliError;
use crate::reload::ReportsError;
use crate::reload::{self, ReloadReport, WatchOptions};
use crate::Sdk;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `abkit watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Box<super::source::SourceArgs>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long = "for", value_name = "SECONDS")]
    for_secs: Option<u64>,
    /// Quiet time after the last file change before reloading, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 250)]
    debounce_ms: u64,
    /// Do not reload on SIGHUP.
    #[arg(long)]
    no_sighup: bool,
    /// Read operator commands from standard input, one per line: `reset-demotion EXPERIMENT`
    /// (lift a demotion of the plugin serving EXPERIMENT), `status` (print the status).
    #[arg(long)]
    commands: bool,
}

#[derive(Serialize)]
struct Watching<'a> {
    files: &'a [PathBuf],
    debounce_ms: u64,
    sighup: bool,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    let sdk = Arc::new(match &args.source.config {
        Some(path) if !args.source.etcd.active() => Sdk::from_file(path)?,
        #[cfg(feature = "etcd")]
        _ => runtime.block_on(Sdk::builder().build_from_etcd(&args.source.etcd.options()?))?,
        #[cfg(not(feature = "etcd"))]
        _ => return Err(CliError::Invalid("give --config FILE".into())),
    });
    let result = runtime.block_on(serve(sdk, args));
    // A reload still stuck inside a plugin call runs on a blocking thread: never wait for it
    // (the process exits within a second of `--for` or SIGTERM, whatever a reload is doing).
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// How long `--for` or SIGTERM waits for a reload in progress before exiting without it.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

async fn serve(sdk: Arc<Sdk>, args: Args) -> Result<ExitCode, CliError> {
    let mut out = Output { json: args.json };
    out.status(&sdk)?;
    let options = WatchOptions {
        debounce: Duration::from_millis(args.debounce_ms),
        sighup: !args.no_sighup,
        ..WatchOptions::default()
    };
    let watcher = if args.source.etcd.active() {
        etcd_watcher(&sdk, &args, &mut out)?
    } else {
        let watcher = reload::watch(Arc::clone(&sdk), options)
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        out.watching(&watcher.watched(), args.debounce_ms, watcher.sighup())?;
        Watcher::Files(watcher)
    };
    let mut reports = watcher.subscribe();
    let deadline = async {
        match args.for_secs {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate = Terminate::new()?;
    // etcd: SIGHUP re-reads the key and reloads (the file watcher handles SIGHUP itself).
    let mut hangup = match &watcher {
        #[cfg(feature = "etcd")]
        Watcher::Etcd(_) if !args.no_sighup => Some(hangup_signal()?),
        _ => None,
    };
    let mut commands = if args.commands {
        stdin_lines()
    } else {
        tokio::sync::mpsc::unbounded_channel().1
    };
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = terminate.recv() => break,
            () = next_hangup(&mut hangup) => {
                #[cfg(feature = "etcd")]
                if let Watcher::Etcd(w) = &watcher {
                    w.reload();
                }
            }
            Some(line) = commands.recv() => out.command(&sdk, &line)?,
            report = reports.recv() => match report {
                Ok(report) => out.report(&report)?,
                Err(ReportsError::Lagged(n)) => eprintln!("warning: {n} reload reports were skipped (output too slow)"),
                Err(ReportsError::Closed | ReportsError::Empty) => return Err(CliError::Invalid(format!("the watcher of {} stopped", args.source.name()))),
            },
        }
    }
    // A reload already running may finish within the grace period; its report is printed too.
    if tokio::time::timeout(SHUTDOWN_GRACE, watcher.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "a reload was still running when the watcher stopped; it is abandoned (the process exits without waiting for it)"
        );
    }
    while let Ok(report) = reports.try_recv() {
        out.report(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The etcd watch of `args`' key.
#[cfg(feature = "etcd")]
fn etcd_watcher(sdk: &Arc<Sdk>, args: &Args, out: &mut Output) -> Result<Watcher, CliError> {
    let options = args.source.etcd.options()?;
    let watcher = crate::source::etcd::watch(Arc::clone(sdk), options.clone())
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    out.watching_etcd(&options.endpoints, &options.key, !args.no_sighup)?;
    Ok(Watcher::Etcd(watcher))
}

/// Without the `etcd` feature no source is from etcd (`active()` is always false).
#[cfg(not(feature = "etcd"))]
fn etcd_watcher(_: &Arc<Sdk>, _: &Args, _: &mut Output) -> Result<Watcher, CliError> {
    Err(CliError::Invalid(
        "this abkit was built without etcd support".into(),
    ))
}

/// The file watcher, or the etcd watch.
enum Watcher {
    Files(reload::WatchHandle),
    #[cfg(feature = "etcd")]
    Etcd(crate::source::etcd::EtcdWatchHandle),
}

impl Watcher {
    fn subscribe(&self) -> crate::ReloadReports {
        match self {
            Watcher::Files(w) => w.subscribe(),
            #[cfg(feature = "etcd")]
            Watcher::Etcd(w) => w.subscribe(),
        }
    }

    async fn shutdown(self) {
        match self {
            Watcher::Files(w) => w.shutdown().await,
            #[cfg(feature = "etcd")]
            Watcher::Etcd(w) => w.shutdown().await,
        }
    }
}

/// Standard input, line by line, read on a thread of its own (ends quietly at end of input).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The SIGHUP stream (unix; elsewhere never fires).
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
fn hangup_signal() -> Result<Hangup, CliError> {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(|e| {
            CliError::Invalid(format!("cannot handle SIGHUP: {e}; or pass --no-sighup"))
        })
    }
    #[cfg(not(unix))]
    Ok(())
}

/// The next SIGHUP; pends forever without a handler.
async fn next_hangup(hangup: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        if signal.recv().await.is_some() {
            return;
        }
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

/// Ctrl-C or SIGTERM.
struct Terminate {
    #[cfg(unix)]
    sigterm: tokio::signal::unix::Signal,
}

impl Terminate {
    fn new() -> Result<Terminate, CliError> {
        #[cfg(unix)]
        {
            let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| CliError::Invalid(format!("cannot handle SIGTERM: {e}")))?;
            Ok(Terminate { sigterm })
        }
        #[cfg(not(unix))]
        Ok(Terminate {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.sigterm.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Text or JSON lines on stdout, flushed per item so a reader sees each one as it happens.
struct Output {
    json: bool,
}

impl Output {
    fn status(&mut self, sdk: &Sdk) -> Result<(), CliError> {
        let status = sdk.status();
        if self.json {
            self.json_line(&status)
        } else {
            self.text(&status.to_string())
        }
    }

    fn watching(
        &mut self,
        files: &[PathBuf],
        debounce_ms: u64,
        sighup: bool,
    ) -> Result<(), CliError> {
        if self.json {
            #[derive(Serialize)]
            struct Line<'a> {
                watching: Watching<'a>,
            }
            return self.json_line(&Line {
                watching: Watching {
                    files,
                    debounce_ms,
                    sighup,
                },
            });
        }
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let hup = if sighup { ", and SIGHUP" } else { "" };
        self.text(&format!(
            "watching {} (debounce {debounce_ms} ms){hup}; Ctrl-C to stop\n",
            names.join(", ")
        ))
    }

    /// What the etcd watch follows:
    /// `{"watching": {"etcd": {"endpoints": [...], "key": K}, "sighup": true}}`.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    fn watching_etcd(
        &mut self,
        endpoints: &[String],
        key: &str,
        sighup: bool,
    ) -> Result<(), CliError> {
        if self.json {
            let line = serde_json::json!({"watching": {"etcd": {"endpoints": endpoints, "key": key}, "sighup": sighup}});
            return self.json_line(&line);
        }
        let hup = if sighup {
            ", and SIGHUP (re-read the key and reload)"
        } else {
            ""
        };
        self.text(&format!(
            "watching etcd key {key} at {}{hup}; Ctrl-C to stop\n",
            endpoints.join(",")
        ))
    }

    /// One operator command from standard input (`--commands`).
    fn command(&mut self, sdk: &Sdk, line: &str) -> Result<(), CliError> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (None, ..) => Ok(()),
            (Some("status"), None, _) => self.status(sdk),
            (Some("reset-demotion"), Some(experiment), None) => {
                let was_demoted = sdk.reset_demotion(experiment);
                if self.json {
                    #[derive(Serialize)]
                    struct Line<'a> {
                        demotion_reset: Reset<'a>,
                    }
                    #[derive(Serialize)]
                    struct Reset<'a> {
                        experiment: &'a str,
                        was_demoted: bool,
                    }
                    self.json_line(&Line {
                        demotion_reset: Reset {
                            experiment,
                            was_demoted,
                        },
                    })
                } else if was_demoted {
                    self.text(&format!(
                        "demotion of {experiment} lifted: its plugin serves again\n"
                    ))
                } else {
                    self.text(&format!(
                        "{experiment}: no demoted plugin serves it; nothing to reset\n"
                    ))
                }
            }
            _ => {
                eprintln!(
                    "abkit watch: unknown command {line:?}; commands: `reset-demotion EXPERIMENT`, `status`"
                );
                Ok(())
            }
        }
    }

    fn report(&mut self, report: &ReloadReport) -> Result<(), CliError> {
        if self.json {
            self.json_line(report)
        } else {
            self.text(&report.to_string())
        }
    }

    fn json_line(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        let line = serde_json::to_string(value)
            .map_err(|e| CliError::Invalid(format!("cannot encode JSON: {e}")))?;
        self.text(&format!("{line}\n"))
    }

    fn text(&mut self, text: &str) -> Result<(), CliError> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }
}
