//! The cross-crate tests that need no process of their own, in one test binary: linked once,
//! and one process whose tests run in parallel. A test file that needs its own process (a
//! global allocator, signals, assertions on what the whole process mapped) is its own binary;
//! `tests/Cargo.toml` lists them and says why.

#[path = "conformance.rs"]
mod conformance;
#[path = "evaluation_order.rs"]
mod evaluation_order;
#[path = "guards.rs"]
mod guards;
#[path = "hostile_plugins.rs"]
mod hostile_plugins;
#[path = "observability.rs"]
mod observability;
#[path = "properties.rs"]
mod properties;
#[path = "reload_deadlines.rs"]
mod reload_deadlines;
#[path = "reload_outcomes.rs"]
mod reload_outcomes;
#[path = "signing_interop.rs"]
mod signing_interop;
#[path = "simulate.rs"]
mod simulate;
#[path = "trust_refusals.rs"]
mod trust_refusals;
#[path = "watch.rs"]
mod watch;
