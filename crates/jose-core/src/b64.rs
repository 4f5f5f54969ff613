//! Strict base64url (RFC 4648 §5, no padding) as JOSE requires: padding, whitespace, non-alphabet characters
//! and non-zero trailing bits are all errors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::JoseError;

/// Encodes bytes as unpadded base64url.
#[must_use]
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out` (no intermediate string).
pub fn encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Length of the unpadded base64url encoding of `len` bytes.
#[must_use]
pub const fn encoded_len(len: usize) -> usize {
    len / 3 * 4 + (len % 3 * 4).div_ceil(3)
}

/// Decodes strict unpadded base64url; `what` names the part for the error message.
///
/// # Errors
/// [`JoseError::Malformed`] for anything but canonical unpadded base64url.
pub fn decode(what: &'static str, s: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::malformed(what, "not valid unpadded base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict() {
        assert_eq!(decode("x", "aGk").unwrap(), b"hi");
        for bad in ["aGk=", "aG k", "aG+k", "aG/k", "aGl", "a"] {
            assert!(decode("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encode_into_appends_and_lengths_are_exact() {
        let mut s = String::from("x.");
        encode_into(b"hi", &mut s);
        assert_eq!(s, "x.aGk");
        for len in 0..100 {
            assert_eq!(encoded_len(len), encode(vec![7u8; len]).len(), "{len}");
        }
    }
}
