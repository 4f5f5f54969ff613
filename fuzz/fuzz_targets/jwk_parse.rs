//! cargo-fuzz target `jwk_parse`: see [`keybound_fuzz::targets::jwk_parse`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::jwk_parse(data));
