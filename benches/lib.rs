//! Shared set-up for the benchmarks (see `hot_paths.rs` and `scale.rs`).
