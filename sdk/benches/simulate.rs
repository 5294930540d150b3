//! Simulation throughput vs the raw SHA-256 floor (being written).
#![allow(missing_docs)]
fn main() {}
