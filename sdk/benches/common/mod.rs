//! Helpers shared by the benchmarks (a directory module, so cargo does not take them for benches).
#![allow(clippy::unwrap_used, missing_docs)]

pub mod plugins;
pub mod report;
