//! cargo-fuzz target `jwe_decrypt`: see [`keybound_fuzz::targets::jwe_decrypt`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::jwe_decrypt(data));
