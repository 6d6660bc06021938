//! The linearizability checker. See jepsen/README.md.
