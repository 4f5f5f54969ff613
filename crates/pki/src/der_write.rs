//! A small DER writer: just the ASN.1 a PKCS#10 request and an X.509 certificate need (SEQUENCE, SET,
//! INTEGER, OBJECT IDENTIFIER, the string types, BIT STRING, OCTET STRING, BOOLEAN, NULL, times, and
//! context-specific tags). Every function returns one complete TLV; definite, minimal lengths only.

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
pub(crate) const UTF8_STRING: u8 = 0x0c;
pub(crate) const PRINTABLE_STRING: u8 = 0x13;
pub(crate) const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One TLV: `tag`, the minimal definite length of `value`, `value`.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        // Fits in one byte by the check above.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        // At most 8 length bytes, so this fits in the low bits.
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A SEQUENCE of already-encoded parts.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A SET OF already-encoded parts, sorted as DER requires (by their encodings).
pub(crate) fn set_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    tlv(SET, &sorted.concat())
}

/// A non-negative INTEGER from a big-endian magnitude (leading zeros dropped, a zero byte added when the
/// top bit is set).
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip..];
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(trimmed);
    tlv(INTEGER, &v)
}

/// A small non-negative INTEGER.
pub(crate) fn small_integer(n: u64) -> Vec<u8> {
    unsigned_integer(&n.to_be_bytes())
}

/// An OBJECT IDENTIFIER from its arcs (`[2, 5, 4, 3]`). The caller passes a valid OID: at least two arcs,
/// the first 0, 1 or 2 (and the second under 40 unless the first is 2).
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        body.extend_from_slice(&chunk);
    }
    tlv(OID, &body)
}

/// NULL.
pub(crate) fn null() -> Vec<u8> {
    tlv(NULL, &[])
}

/// BOOLEAN.
pub(crate) fn boolean(b: bool) -> Vec<u8> {
    tlv(BOOLEAN, &[if b { 0xff } else { 0 }])
}

/// OCTET STRING.
pub(crate) fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, bytes)
}

/// BIT STRING of whole bytes (no unused bits): signatures and keys.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(0);
    v.extend_from_slice(bytes);
    tlv(BIT_STRING, &v)
}

/// A named-bit BIT STRING (X.680 §22.7: trailing zero bits dropped), bit 0 the most significant bit of the
/// first byte, as keyUsage numbers its bits.
pub(crate) fn named_bits(bits: &[u8]) -> Vec<u8> {
    let Some(highest) = bits.iter().copied().max() else {
        return tlv(BIT_STRING, &[0]);
    };
    let len = usize::from(highest / 8) + 1;
    let mut bytes = vec![0u8; len];
    for bit in bits {
        bytes[usize::from(bit / 8)] |= 0x80 >> (bit % 8);
    }
    let unused = 7 - highest % 8;
    let mut v = vec![unused];
    v.extend_from_slice(&bytes);
    tlv(BIT_STRING, &v)
}

/// A constructed context-specific tag `[n]` around already-encoded contents (EXPLICIT, or IMPLICIT over a
/// constructed type).
pub(crate) fn context(n: u8, contents: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, contents)
}

/// A primitive context-specific tag `[n]` (IMPLICIT over a primitive type, as GeneralName's dNSName).
pub(crate) fn context_primitive(n: u8, value: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, value)
}

/// A time as RFC 5280 §4.1.2.5 wants it: UTCTime `YYMMDDHHMMSSZ` for years 1950–2049, GeneralizedTime
/// `YYYYMMDDHHMMSSZ` otherwise. `secs` counts from the Unix epoch.
pub(crate) fn time(secs: i64) -> Vec<u8> {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if (1950..2050).contains(&year) {
        let text = format!(
            "{:02}{month:02}{day:02}{h:02}{m:02}{s:02}Z",
            year.rem_euclid(100)
        );
        tlv(UTC_TIME, text.as_bytes())
    } else {
        let text = format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z");
        tlv(GENERALIZED_TIME, text.as_bytes())
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_as_openssl_does() {
        // 1.2.840.113549.1.1.11 (sha256WithRSAEncryption)
        assert_eq!(
            oid(&[1, 2, 840, 113_549, 1, 1, 11]),
            [
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b
            ]
        );
        assert_eq!(oid(&[2, 5, 29, 17]), [0x06, 0x03, 0x55, 0x1d, 0x11]);
    }

    #[test]
    fn integers_and_bits() {
        assert_eq!(unsigned_integer(&[0, 0, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(small_integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(small_integer(32), [0x02, 0x01, 0x20]);
        // digitalSignature alone; digitalSignature + keyEncipherment
        assert_eq!(named_bits(&[0]), [0x03, 0x02, 0x07, 0x80]);
        assert_eq!(named_bits(&[0, 2]), [0x03, 0x02, 0x05, 0xa0]);
    }

    #[test]
    fn times_switch_form_in_2050() {
        assert_eq!(time(0), tlv(UTC_TIME, b"700101000000Z"));
        // 2049-12-31T23:59:59Z and one second later
        assert_eq!(time(2_524_607_999), tlv(UTC_TIME, b"491231235959Z"));
        assert_eq!(
            time(2_524_608_000),
            tlv(GENERALIZED_TIME, b"20500101000000Z")
        );
        assert_eq!(time(1_709_164_800), tlv(UTC_TIME, b"240229000000Z"));
    }

    #[test]
    fn long_lengths_are_minimal() {
        let enc = tlv(SEQUENCE, &[0u8; 300]);
        assert_eq!(&enc[..4], &[0x30, 0x82, 0x01, 0x2c]);
        let enc = tlv(SEQUENCE, &[0u8; 200]);
        assert_eq!(&enc[..3], &[0x30, 0x81, 0xc8]);
    }
}
