//! `abkit status`: load a configuration the way a service would (verify, load, probe every
//! plugin) and show what would serve, and why anything was refused.
//!
//! Exit codes, one rule (the README's tool table says the same): 0 when everything serves as
//! configured; 1 when any plugin or experiment is refused (the status is still printed, each
//! refusal also goes to stderr, so a script sees it), or the configuration cannot be read;
//! with `--strict`, 1 also when unsigned plugins are allowed or the accepted-versions ledger
//! could not be persisted; 2 for usage errors. With an etcd source, 1 when the newest document
//! was refused, and with `--strict` when etcd has not confirmed the configuration current for
//! more than `--max-staleness` seconds.

use super::CliError;
use crate::status::{PluginState, Status};
use std::process::ExitCode;

/// Arguments of `abkit status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Box<super::source::SourceArgs>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also exit 1 when anything else is not as a production deploy needs it: unsigned plugins
    /// allowed (`danger_allow_unsigned`), accepted versions not persisted. Each reason goes to
    /// stderr. (A refused plugin or experiment exits 1 with or without it.)
    #[arg(long)]
    strict: bool,
    /// With --strict and an etcd source: exit 1 when etcd has not confirmed the configuration
    /// current for more than this many seconds (a broken watch, or never since the start
    /// from the local copy).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    max_staleness: u64,
}

pub(super) fn run(args: Args) -> Result<ExitCode, CliError> {
    let sdk = args.source.load()?;
    let status = sdk.status();
    if args.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| CliError::Invalid(format!("cannot encode status: {e}")))?;
        println!("{text}");
    } else {
        print!("{status}");
    }
    let (mut reasons, label) = if args.strict {
        (strict_failures(&status), "status --strict")
    } else {
        (refusals(&status), "status")
    };
    if let Some(source) = &status.source {
        let max_age = std::time::Duration::from_secs(args.max_staleness);
        reasons.extend(source_problems(
            source,
            args.strict,
            crate::reload::now_ms(),
            max_age,
        ));
    }
    for reason in &reasons {
        eprintln!("abkit: {label}: {reason}");
    }
    Ok(if reasons.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Why `status --strict` fails: [`refusals`], plus anything else a production deploy must not
/// run with; one line per reason, empty when all is well. A new condition is one more `if`
/// pushing a line that says what is wrong and what to do.
fn strict_failures(status: &Status) -> Vec<String> {
    let mut reasons = Vec::new();
    if status.danger_unsigned_plugins {
        reasons.push(
            "trust.danger_allow_unsigned is on: plugins are loaded WITHOUT signature checks; \
             remove it from [trust] outside development"
                .to_string(),
        );
    }
    if let Some(problem) = &status.ledger_problem {
        reasons.push(format!(
            "the accepted-versions ledger could not be persisted ({problem}): rollback protection \
             across restarts is not guaranteed; fix the state directory (space, permissions)"
        ));
    }
    reasons.extend(refusals(status));
    reasons
}

/// Why plain `status` fails: every refused plugin and experiment (something does not serve as
/// configured), one line each; empty when everything serves as configured.
fn refusals(status: &Status) -> Vec<String> {
    let mut reasons = Vec::new();
    for p in &status.plugins {
        if p.state != PluginState::Active {
            let why = p.refusal.as_ref().map_or(String::new(), |r| {
                format!(" at step {} ({})", r.step, r.reason)
            });
            reasons.push(format!(
                "plugin {} was refused{why}; see its status above",
                p.name
            ));
        }
    }
    for e in &status.experiments {
        if let Some(r) = &e.refusal {
            reasons.push(format!(
                "experiment {} does not use its plugin: refused at step {} ({}); see its status above",
                e.key, r.step, r.reason
            ));
        }
    }
    reasons
}

/// Why the configuration source fails `status`: a refused etcd document (always: the newest
/// document does not serve), and with `strict`, a source not confirmed current for longer than
/// `max_age` ([`crate::source::SourceStatus::stale_reason`]).
fn source_problems(
    source: &crate::source::SourceStatus,
    strict: bool,
    now_ms: u64,
    max_age: std::time::Duration,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(r) = source.refused_revision {
        reasons.push(format!(
            "etcd key {} revision {r} was refused (see the last reload above); revision {} keeps serving: fix the document and publish it again",
            source.key.as_deref().unwrap_or_default(),
            source.revision.map_or_else(|| "-".to_string(), |r| r.to_string())
        ));
    }
    if strict {
        reasons.extend(source.stale_reason(now_ms, max_age));
    }
    reasons
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn healthy() -> Status {
        Status {
            generation: 1,
            loaded_libraries: 0,
            danger_unsigned_plugins: false,
            ledger_problem: None,
            abandoned_plugin_calls: 0,
            plugins: Vec::new(),
            experiments: Vec::new(),
            last_reload: None,
            source: None,
        }
    }

    #[test]
    fn strict_fails_on_unsigned_plugins_and_on_a_ledger_that_was_not_persisted() {
        assert!(strict_failures(&healthy()).is_empty());
        let unsigned = Status {
            danger_unsigned_plugins: true,
            ..healthy()
        };
        assert_eq!(strict_failures(&unsigned).len(), 1);
        let unpersisted = Status {
            ledger_problem: Some("plugin \"x\" v2: i/o error".into()),
            ..healthy()
        };
        let reasons = strict_failures(&unpersisted);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("could not be persisted"), "{reasons:?}");
        // Neither is a refusal: plain `status` exits 0 on them.
        assert!(refusals(&unsigned).is_empty() && refusals(&unpersisted).is_empty());
    }
}
