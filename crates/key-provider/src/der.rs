//! A minimal DER reader and writer: just enough ASN.1 to read and write SubjectPublicKeyInfo, PKCS#1
//! `RSAPublicKey`, to walk an X.509 certificate to its key, and to wrap a PKCS#1 private key in PKCS#8.
//! Strict: definite lengths only, minimal length encodings only, and every read is bounds-checked (this code
//! parses untrusted public keys and certificates).

/// ASN.1 universal tags used here.
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
#[cfg_attr(not(any(feature = "software", feature = "pkcs11")), allow(dead_code))]
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// A DER decoding failure; deliberately carries no input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

/// A cursor over DER bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Reads one TLV and returns (tag, contents).
    pub(crate) fn read_any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self
            .input
            .split_first()
            .ok_or(DerError("unexpected end of input"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("high-tag-number form is not supported"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(DerError("indefinite length is not DER"));
            }
            if n > 4 {
                return Err(DerError("length too large"));
            }
            if rest.len() < n {
                return Err(DerError("truncated length"));
            }
            let (len_bytes, r) = rest.split_at(n);
            rest = r;
            if len_bytes[0] == 0 {
                return Err(DerError("non-minimal length"));
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(DerError("non-minimal length"));
            }
            len
        };
        if rest.len() < len {
            return Err(DerError("truncated value"));
        }
        let (value, rest) = rest.split_at(len);
        self.input = rest;
        Ok((tag, value))
    }

    /// The tag of the next TLV, without reading it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Reads one TLV that must carry `tag` and returns it whole: tag, length and contents.
    pub(crate) fn read_raw(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let start = self.input;
        self.read(tag)?;
        Ok(&start[..start.len() - self.input.len()])
    }

    /// Reads one TLV that must carry `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (t, v) = self.read_any()?;
        if t != tag {
            return Err(DerError("unexpected tag"));
        }
        Ok(v)
    }

    /// Reads a non-negative INTEGER and returns its magnitude without leading zero bytes.
    pub(crate) fn read_unsigned_integer(&mut self) -> Result<&'a [u8], DerError> {
        let v = self.read(TAG_INTEGER)?;
        match v {
            [] => Err(DerError("empty integer")),
            [b, ..] if b & 0x80 != 0 => Err(DerError("negative integer")),
            [0] => Ok(v),
            [0, b, ..] if b & 0x80 == 0 => Err(DerError("non-minimal integer")),
            [0, rest @ ..] => Ok(rest),
            _ => Ok(v),
        }
    }

    pub(crate) fn finish(self) -> Result<(), DerError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DerError("trailing data"))
        }
    }
}

/// Appends a TLV with `tag` and `value` to `out`.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        // Fits in one byte by the check above.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let n = bytes.len() - skip;
        out.push(0x80 | n as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

/// Appends an unsigned big-endian magnitude as a DER INTEGER.
pub(crate) fn write_unsigned_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let trimmed = {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        &magnitude[skip..]
    };
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed[0] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(trimmed);
    write_tlv(out, TAG_INTEGER, &v);
}

/// Wraps `value` in a TLV and returns it.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write_tlv(&mut out, tag, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_long_lengths() {
        let value = vec![7u8; 300];
        let enc = tlv(TAG_OCTET_STRING, &value);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut r = Reader::new(&enc);
        assert_eq!(r.read(TAG_OCTET_STRING).unwrap(), &value[..]);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn rejects_non_minimal_and_truncated() {
        assert!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
                .read_any()
                .is_err()
        );
        assert!(Reader::new(&[0x04, 0x80]).read_any().is_err());
        assert!(Reader::new(&[0x04, 0x05, 1, 2]).read_any().is_err());
        assert!(
            Reader::new(&[0x02, 0x02, 0x00, 0x01])
                .read_unsigned_integer()
                .is_err()
        );
        assert!(
            Reader::new(&[0x02, 0x01, 0x80])
                .read_unsigned_integer()
                .is_err()
        );
        assert_eq!(
            Reader::new(&[0x02, 0x02, 0x00, 0x80])
                .read_unsigned_integer()
                .unwrap(),
            &[0x80]
        );
    }

    #[test]
    fn integers_get_a_sign_byte_when_needed() {
        let mut out = Vec::new();
        write_unsigned_integer(&mut out, &[0x00, 0x80, 0x01]);
        assert_eq!(out, vec![0x02, 0x03, 0x00, 0x80, 0x01]);
    }
}
