//! cargo-fuzz target `flex_claims`: see [`keybound_fuzz::targets::flex_claims`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::flex_claims(data));
