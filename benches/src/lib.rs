//! Criterion benches of the hot paths; this crate has no library code of its own.
