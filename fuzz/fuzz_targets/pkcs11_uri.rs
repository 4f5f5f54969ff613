//! cargo-fuzz target `pkcs11_uri`: see [`keybound_fuzz::targets::pkcs11_uri`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::pkcs11_uri(data));
