//! cargo-fuzz target `jws_verify`: see [`keybound_fuzz::targets::jws_verify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::jws_verify(data));
