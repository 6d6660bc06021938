//! `conclave-jepsen`: command-line entry point.
fn main() {}
