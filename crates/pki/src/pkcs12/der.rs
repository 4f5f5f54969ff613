//! A strict DER reader for PKCS#12 files: definite, minimal lengths, every read bounds-checked (the input is
//! an untrusted file). Errors name what was being read, never the bytes.

use super::Pkcs12Error;

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
/// `[0]` constructed (EXPLICIT tagging).
pub(crate) const CONTEXT_0: u8 = 0xa0;
/// `[0]` primitive (IMPLICIT OCTET STRING).
pub(crate) const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// A cursor over DER bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    /// What is being read, for errors.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8], what: &'static str) -> Self {
        Self { input, what }
    }

    fn corrupt(&self, problem: &str) -> Pkcs12Error {
        Pkcs12Error::Corrupt(format!("{} ({problem})", self.what))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Reads one TLV: (tag, contents).
    pub(crate) fn read_any(&mut self) -> Result<(u8, &'a [u8]), Pkcs12Error> {
        let Some((&tag, rest)) = self.input.split_first() else {
            return Err(self.corrupt("truncated"));
        };
        if tag & 0x1f == 0x1f {
            return Err(self.corrupt("high tag number"));
        }
        let Some((&first, mut rest)) = rest.split_first() else {
            return Err(self.corrupt("truncated"));
        };
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(self.corrupt(
                    "indefinite length: BER, not DER; re-export the file with `openssl pkcs12`",
                ));
            }
            if n > 4 || rest.len() < n {
                return Err(self.corrupt("truncated or oversized length"));
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if bytes[0] == 0 || len < 0x80 {
                return Err(self.corrupt("non-minimal length"));
            }
            len
        };
        if rest.len() < len {
            return Err(self.corrupt("truncated"));
        }
        let (value, rest) = rest.split_at(len);
        self.input = rest;
        Ok((tag, value))
    }

    /// Reads one TLV that must carry `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], Pkcs12Error> {
        let (t, v) = self.read_any()?;
        if t != tag {
            return Err(self.corrupt("unexpected ASN.1 tag"));
        }
        Ok(v)
    }

    /// Reads one TLV that must carry `tag`, as a reader over its contents.
    pub(crate) fn nested(
        &mut self,
        tag: u8,
        what: &'static str,
    ) -> Result<Reader<'a>, Pkcs12Error> {
        Ok(Reader::new(self.read(tag)?, what))
    }

    /// Reads a small non-negative INTEGER (versions, iteration counts).
    pub(crate) fn read_small_uint(&mut self) -> Result<u32, Pkcs12Error> {
        let v = self.read(INTEGER)?;
        let v = match v {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => v,
        };
        if v.is_empty() || v.len() > 4 || v[0] & 0x80 != 0 && v.len() == 4 {
            return Err(self.corrupt("integer out of range"));
        }
        Ok(v.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), Pkcs12Error> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing data"))
        }
    }
}

/// Encodes an OID's dotted form as DER contents (for comparisons with constants).
pub(crate) fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    };
    if arcs.len() >= 2 {
        push(arcs[0] * 40 + arcs[1]);
        for a in &arcs[2..] {
            push(*a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_as_der() {
        assert_eq!(
            oid("1.2.840.113549.1.7.1"),
            [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]
        );
    }

    #[test]
    fn truncation_and_ber_are_refused() {
        assert!(
            Reader::new(&[0x30, 0x05, 0x02], "x")
                .read(SEQUENCE)
                .is_err()
        );
        assert!(
            Reader::new(&[0x30, 0x80, 0x00, 0x00], "x")
                .read(SEQUENCE)
                .is_err()
        );
        assert!(
            Reader::new(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0], "x")
                .read(SEQUENCE)
                .is_err()
        );
    }
}
