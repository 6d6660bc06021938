//! The deterministic simulator. See jepsen/README.md.
