//! Apply throughput benchmarks (filled in with the README figures).
fn main() {}
