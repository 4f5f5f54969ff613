//! Distinguished names and OIDs as people read them: a DER `Name` in RFC 4514 text (`CN=acme,O=Acme Bank,C=FR`,
//! as `openssl … -nameopt RFC2253` prints it) and an OID in dotted form. Used for certificates
//! (`Certificate::subject_name`, `keys import`) and for the certificates `keys list` finds in a token.
//! Display only: nothing here decides anything.

use crate::der::{self, Reader};

pub(crate) const TAG_SET: u8 = 0x31;

/// A DER Name as RFC 4514 writes it: RDNs last first, separated by `,`; multi-valued RDNs joined by `+`;
/// attribute types by their short names (`CN`, `O`, `OU`, `C`, `L`, `ST`, `STREET`, `DC`, `UID`, and
/// OpenSSL's `emailAddress`, `serialNumber`), others as dotted OIDs; string values escaped, other values as
/// `#` and the hex of their DER.
pub(crate) fn distinguished_name(name: &[u8]) -> Option<String> {
    let mut outer = Reader::new(name);
    let mut rdns = Reader::new(outer.read(der::TAG_SEQUENCE).ok()?);
    outer.finish().ok()?;
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let mut set = Reader::new(rdns.read(TAG_SET).ok()?);
        let mut values = Vec::new();
        while !set.is_empty() {
            let mut pair = Reader::new(set.read(der::TAG_SEQUENCE).ok()?);
            let oid = pair.read(der::TAG_OID).ok()?;
            let (tag, value) = pair.read_any().ok()?;
            pair.finish().ok()?;
            let name = attribute_name(oid).map_or_else(|| dotted_oid(oid), str::to_owned);
            let value = match string_value(tag, value) {
                Some(text) => escape_rfc4514(&text),
                None => {
                    let mut tlv = Vec::new();
                    der::write_tlv(&mut tlv, tag, value);
                    format!(
                        "#{}",
                        tlv.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )
                }
            };
            values.push(format!("{name}={value}"));
        }
        out.push(values.join("+"));
    }
    out.reverse();
    Some(out.join(","))
}

fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// The text of a DER string value (UTF8String, PrintableString, IA5String, NumericString, T61String as
/// Latin-1, BMPString, UniversalString).
fn string_value(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x12 | 0x13 | 0x16 => String::from_utf8(value.to_vec()).ok(),
        0x14 => Some(value.iter().map(|b| char::from(*b)).collect()),
        0x1e => {
            let units: Vec<u16> = value
                .chunks(2)
                .map(|c| match c {
                    [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            String::from_utf16(&units).ok()
        }
        0x1c => value
            .chunks(4)
            .map(|c| match c {
                [a, b, c, d] => char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// RFC 4514 section 2.4: `"+,;<>\` escaped, a leading `#` or space and a trailing space escaped, control
/// characters as `\XX`.
fn escape_rfc4514(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// An OID in dotted form (`1.3.132.0.35`).
pub(crate) fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(rdns: &[&[(&[u8], u8, &str)]]) -> Vec<u8> {
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in *rdn {
                let mut pair = der::tlv(der::TAG_OID, oid);
                der::write_tlv(&mut pair, *tag, value.as_bytes());
                der::write_tlv(&mut set, der::TAG_SEQUENCE, &pair);
            }
            der::write_tlv(&mut seq, TAG_SET, &set);
        }
        der::tlv(der::TAG_SEQUENCE, &seq)
    }

    #[test]
    fn names_are_written_last_rdn_first_with_escapes() {
        let der = name(&[
            &[(&[0x55, 0x04, 0x06], 0x13, "DE")],
            &[(&[0x55, 0x04, 0x0a], 0x0c, "Bank, Inc.")],
            &[
                (&[0x55, 0x04, 0x03], 0x0c, "signing"),
                (&[0x55, 0x04, 0x0b], 0x0c, "#ops "),
            ],
        ]);
        assert_eq!(
            distinguished_name(&der).unwrap(),
            "CN=signing+OU=\\#ops\\ ,O=Bank\\, Inc.,C=DE"
        );
        let odd = name(&[&[(&[0x2b, 0x06, 0x01, 0x04, 0x01], 0x04, "x")]]);
        assert_eq!(distinguished_name(&odd).unwrap(), "1.3.6.1.4.1=#040178");
        assert_eq!(distinguished_name(&[0x30, 0x03, 0x31]), None);
    }
}
