//! cargo-fuzz target `cms_decrypt`: see [`keybound_fuzz::targets::cms_decrypt`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybound_fuzz::targets::cms_decrypt(data));
