//! The bodies of keybound's fuzz targets (`targets.rs`), shared with the regression test that replays
//! `tests/fuzz-regressions/<target>/*` in the normal test suite (`crates/cli/tests/fuzz_regressions.rs`).

pub mod targets;
