//! Distinguished names and subject alternative names as people type them.
//!
//! A [`DistinguishedName`] is written in the RFC 4514 string form, most specific first:
//! `CN=acmebank,O=Acme Bank,C=FR`. It is encoded, as RFC 4514 says, in the reverse order (the
//! RDNSequence starts with `C`), so `openssl x509 -subject -nameopt RFC2253` prints it back as typed and
//! `openssl x509 -text` shows `C = FR, O = Acme Bank, CN = acmebank`. Special characters in a value are
//! escaped with a backslash (`O=Acme\, Inc.`; also `\+ \" \\ \< \> \; \=`, `\#` and a leading or
//! trailing `\ `, and `\XX` hex pairs for UTF-8 bytes). Multi-valued RDNs (`CN=a+UID=b`) are refused.
//!
//! Known attribute names: `CN`, `O`, `OU`, `C` (two letters), `L`, `ST`, `street`, `serialNumber` (as
//! Cybersource uses it for key ids), `title`, `GN`/`givenName`, `SN`/`surname`, `UID`, `DC`,
//! `emailAddress`, `organizationIdentifier`; any other attribute as a dotted OID (`2.5.4.97=…`). Values
//! are UTF8String, except `C` and `serialNumber` (PrintableString) and `DC` and `emailAddress`
//! (IA5String).
//!
//! A [`SubjectAltName`] is written as openssl spells it: `DNS:name`, `IP:192.0.2.1` or `IP:2001:db8::1`,
//! `URI:https://…`, `email:ops@example.com`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::der_write as der;
use crate::error::PkiError;

/// How a value of an attribute is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    Utf8,
    Printable,
    Ia5,
}

/// (names, OID arcs, string kind) of the attributes known by name.
const ATTRIBUTES: &[(&[&str], &[u64], StringKind)] = &[
    (&["CN", "commonName"], &[2, 5, 4, 3], StringKind::Utf8),
    (&["SN", "surname"], &[2, 5, 4, 4], StringKind::Utf8),
    (&["serialNumber"], &[2, 5, 4, 5], StringKind::Printable),
    (&["C", "countryName"], &[2, 5, 4, 6], StringKind::Printable),
    (&["L", "localityName"], &[2, 5, 4, 7], StringKind::Utf8),
    (
        &["ST", "stateOrProvinceName"],
        &[2, 5, 4, 8],
        StringKind::Utf8,
    ),
    (
        &["street", "streetAddress"],
        &[2, 5, 4, 9],
        StringKind::Utf8,
    ),
    (&["O", "organizationName"], &[2, 5, 4, 10], StringKind::Utf8),
    (
        &["OU", "organizationalUnitName"],
        &[2, 5, 4, 11],
        StringKind::Utf8,
    ),
    (&["title"], &[2, 5, 4, 12], StringKind::Utf8),
    (&["GN", "givenName"], &[2, 5, 4, 42], StringKind::Utf8),
    (
        &["organizationIdentifier"],
        &[2, 5, 4, 97],
        StringKind::Utf8,
    ),
    (
        &["UID", "userId"],
        &[0, 9, 2342, 19_200_300, 100, 1, 1],
        StringKind::Utf8,
    ),
    (
        &["DC", "domainComponent"],
        &[0, 9, 2342, 19_200_300, 100, 1, 25],
        StringKind::Ia5,
    ),
    (
        &["emailAddress"],
        &[1, 2, 840, 113_549, 1, 9, 1],
        StringKind::Ia5,
    ),
];

/// The PrintableString alphabet (X.680 §41.4).
fn printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// One attribute of a name: `O=Acme Bank`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    /// The name as typed (or the dotted OID).
    name: String,
    oid: Vec<u64>,
    kind: StringKind,
    value: String,
}

impl Attribute {
    /// `SET { SEQUENCE { type, value } }`: one single-valued RDN.
    fn to_rdn_der(&self) -> Vec<u8> {
        let tag = match self.kind {
            StringKind::Utf8 => der::UTF8_STRING,
            StringKind::Printable => der::PRINTABLE_STRING,
            StringKind::Ia5 => der::IA5_STRING,
        };
        let atv = der::sequence(&[&der::oid(&self.oid), &der::tlv(tag, self.value.as_bytes())]);
        der::set_of(&[&atv])
    }
}

/// An X.500 distinguished name, parsed from its RFC 4514 string form (see the module docs).
///
/// ```
/// use keybound_pki::DistinguishedName;
/// let dn: DistinguishedName = r"CN=acmebank,O=Acme\, Inc.,serialNumber=1234567890,C=FR".parse().unwrap();
/// assert_eq!(dn.to_string(), r"CN=acmebank,O=Acme\, Inc.,serialNumber=1234567890,C=FR");
/// assert!("CN=acmebank,C=France".parse::<DistinguishedName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName {
    /// Most specific first, as typed.
    attributes: Vec<Attribute>,
}

impl DistinguishedName {
    /// The DER `Name` (an RDNSequence, least specific first).
    #[must_use]
    pub fn to_der(&self) -> Vec<u8> {
        let rdns: Vec<Vec<u8>> = self
            .attributes
            .iter()
            .rev()
            .map(Attribute::to_rdn_der)
            .collect();
        der::tlv(der::SEQUENCE, &rdns.concat())
    }
}

impl FromStr for DistinguishedName {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let bad = |reason: String| PkiError::InvalidName { reason };
        let mut attributes = Vec::new();
        for part in split_unescaped(s, ',').map_err(bad)? {
            if split_unescaped(&part, '+').map_err(bad)?.len() > 1 {
                return Err(bad(
                    "multi-valued RDNs (`+`) are not supported; escape a literal plus as `\\+`"
                        .into(),
                ));
            }
            let Some((name, raw)) = part.split_once('=') else {
                return Err(bad(format!("`{}` is not NAME=VALUE", part.trim())));
            };
            let name = name.trim();
            let value = unescape(raw.trim_start()).map_err(bad)?;
            if value.is_empty() {
                return Err(bad(format!("{name}= has an empty value")));
            }
            let (oid, kind) = if let Some((_, oid, kind)) = ATTRIBUTES
                .iter()
                .find(|(names, _, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            {
                (oid.to_vec(), *kind)
            } else if let Some(oid) = parse_dotted_oid(name) {
                (oid, StringKind::Utf8)
            } else {
                return Err(bad(format!(
                    "unknown attribute `{name}` (known: CN, O, OU, C, L, ST, street, serialNumber, title, GN, \
                     SN, UID, DC, emailAddress, organizationIdentifier; or a dotted OID such as 2.5.4.97)"
                )));
            };
            match kind {
                StringKind::Printable if !value.chars().all(printable) => {
                    return Err(bad(format!(
                        "{name}= must be a PrintableString (letters, digits, space and ' ( ) + , - . / : = ?)"
                    )));
                }
                StringKind::Ia5 if !value.is_ascii() => {
                    return Err(bad(format!("{name}= must be ASCII")));
                }
                _ => {}
            }
            if oid == [2, 5, 4, 6]
                && !(value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase()))
            {
                return Err(bad(format!(
                    "C= is a two-letter ISO 3166 country code such as FR, not `{value}`"
                )));
            }
            attributes.push(Attribute {
                name: name.to_owned(),
                oid,
                kind,
                value,
            });
        }
        if attributes.is_empty() {
            return Err(bad("the name is empty; give at least CN=…".into()));
        }
        Ok(Self { attributes })
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", a.name)?;
            let last = a.value.chars().count().saturating_sub(1);
            for (j, c) in a.value.chars().enumerate() {
                let escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                    || (j == 0 && matches!(c, '#' | ' '))
                    || (j == last && c == ' ');
                if escape {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn parse_dotted_oid(s: &str) -> Option<Vec<u64>> {
    let arcs: Vec<u64> = s
        .split('.')
        .map(|a| {
            (!a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
                .then(|| a.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    match arcs.as_slice() {
        [0 | 1, second, _, ..] if *second < 40 => Some(arcs),
        [2, _, _, ..] => Some(arcs),
        _ => None,
    }
}

/// Splits at unescaped `sep`, keeping escapes in the parts.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            current.push(
                chars
                    .next()
                    .ok_or_else(|| "a name ends with a lone backslash".to_owned())?,
            );
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    if sep == ',' && parts.iter().any(|p| p.trim().is_empty()) {
        if parts.len() == 1 {
            return Ok(Vec::new());
        }
        return Err("an empty attribute between commas".into());
    }
    Ok(parts)
}

/// Removes RFC 4514 escapes: `\` before a special character, `\XX` hex pairs (UTF-8 bytes). Unescaped
/// trailing spaces are dropped.
fn unescape(raw: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let mut chars = raw.chars().peekable();
    // Index (in bytes) after the last escaped character: trailing spaces after it are kept.
    let mut keep = 0;
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            if c != ' ' {
                keep = bytes.len();
            }
            continue;
        }
        let Some(next) = chars.next() else {
            return Err("a value ends with a lone backslash".into());
        };
        if next.is_ascii_hexdigit() {
            let low = chars
                .next()
                .filter(char::is_ascii_hexdigit)
                .ok_or_else(|| "a `\\X` escape needs two hex digits".to_owned())?;
            let pair = format!("{next}{low}");
            bytes.push(u8::from_str_radix(&pair, 16).map_err(|e| e.to_string())?);
        } else if " \"#+,;<=>\\".contains(next) {
            bytes.push(next as u8);
        } else {
            return Err(format!(
                "`\\{next}` is not an escape (escape only , + \" \\ < > ; = # and space)"
            ));
        }
        keep = bytes.len();
    }
    bytes.truncate(keep);
    String::from_utf8(bytes).map_err(|_| "escaped bytes that are not UTF-8".into())
}

/// One subject alternative name (RFC 5280 §4.2.1.6 GeneralName), in openssl's spelling (module docs).
///
/// ```
/// use keybound_pki::SubjectAltName;
/// for san in ["DNS:api.acme.example", "IP:192.0.2.7", "IP:2001:db8::7", "URI:https://acme.example/", "email:ops@acme.example"] {
///     assert_eq!(san.parse::<SubjectAltName>().unwrap().to_string(), san);
/// }
/// assert!("dns name".parse::<SubjectAltName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// `DNS:name` (dNSName).
    Dns(String),
    /// `IP:address` (iPAddress), IPv4 or IPv6.
    Ip(IpAddr),
    /// `URI:uri` (uniformResourceIdentifier).
    Uri(String),
    /// `email:address` (rfc822Name).
    Email(String),
}

impl SubjectAltName {
    /// The DER GeneralName.
    pub(crate) fn to_der(&self) -> Vec<u8> {
        match self {
            Self::Email(e) => der::context_primitive(1, e.as_bytes()),
            Self::Dns(d) => der::context_primitive(2, d.as_bytes()),
            Self::Uri(u) => der::context_primitive(6, u.as_bytes()),
            Self::Ip(IpAddr::V4(a)) => der::context_primitive(7, &a.octets()),
            Self::Ip(IpAddr::V6(a)) => der::context_primitive(7, &a.octets()),
        }
    }
}

impl FromStr for SubjectAltName {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let bad = |reason: String| PkiError::InvalidSan { reason };
        let Some((kind, value)) = s.split_once(':') else {
            return Err(bad(format!(
                "`{s}` has no type: write DNS:name, IP:address, URI:uri or email:address"
            )));
        };
        let visible = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
        match kind.to_ascii_lowercase().as_str() {
            "dns" if visible(value) && !value.contains(['/', '@', ':']) => {
                Ok(Self::Dns(value.to_owned()))
            }
            "dns" => Err(bad(format!("DNS:{value} is not a host name"))),
            "ip" => value
                .parse()
                .map(Self::Ip)
                .map_err(|_| bad(format!("IP:{value} is not an IPv4 or IPv6 address"))),
            "uri"
                if visible(value)
                    && value.split_once(':').is_some_and(|(scheme, _)| {
                        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                            && scheme
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    }) =>
            {
                Ok(Self::Uri(value.to_owned()))
            }
            "uri" => Err(bad(format!(
                "URI:{value} is not an absolute URI (scheme:…)"
            ))),
            "email"
                if visible(value)
                    && value
                        .split_once('@')
                        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()) =>
            {
                Ok(Self::Email(value.to_owned()))
            }
            "email" => Err(bad(format!("email:{value} is not an e-mail address"))),
            _ => Err(bad(format!(
                "unknown type `{kind}:`; write DNS:name, IP:address, URI:uri or email:address"
            ))),
        }
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(v) => write!(f, "DNS:{v}"),
            Self::Ip(v) => write!(f, "IP:{v}"),
            Self::Uri(v) => write!(f, "URI:{v}"),
            Self::Email(v) => write!(f, "email:{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_least_specific_first() {
        let dn: DistinguishedName = "CN=a,C=FR".parse().unwrap();
        let der = dn.to_der();
        // SEQUENCE { SET { SEQUENCE { 2.5.4.6, PrintableString "FR" } }, SET { … CN UTF8String "a" } }
        assert_eq!(
            der,
            [
                0x30, 0x19, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'F',
                b'R', 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'a'
            ]
        );
    }

    #[test]
    fn escapes_and_spaces() {
        let dn: DistinguishedName = r"CN=a\,b\+c\\d, O = Acme Bank , OU=\ x\ ,L=caf\C3\A9"
            .parse()
            .unwrap();
        let values: Vec<&str> = dn.attributes.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(values, [r"a,b+c\d", "Acme Bank", " x ", "café"]);
        assert_eq!(dn.to_string(), r"CN=a\,b\+c\\d,O=Acme Bank,OU=\ x\ ,L=café");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "CN",
            "CN=",
            "CN=a,,O=b",
            "CN=a+UID=b",
            "XX=a",
            "C=fr",
            "C=FRA",
            "serialNumber=ü",
            r"CN=a\",
            r"CN=a\q",
            "emailAddress=é@x",
            "1.2=x",
        ] {
            assert!(bad.parse::<DistinguishedName>().is_err(), "{bad:?}");
        }
        let ok: DistinguishedName = "2.5.4.97=VATFR-123,cn=x,SERIALNUMBER=42".parse().unwrap();
        assert_eq!(ok.attributes[0].oid, [2, 5, 4, 97]);
        assert_eq!(ok.attributes[2].kind, StringKind::Printable);
    }

    #[test]
    fn sans_encode_as_general_names() {
        let der = |s: &str| s.parse::<SubjectAltName>().unwrap().to_der();
        assert_eq!(der("DNS:a.b"), [0x82, 3, b'a', b'.', b'b']);
        assert_eq!(der("IP:192.0.2.1"), [0x87, 4, 192, 0, 2, 1]);
        assert_eq!(der("IP:::1")[..2], [0x87, 16]);
        assert_eq!(der("email:a@b")[0], 0x81);
        assert_eq!(der("URI:urn:x")[0], 0x86);
        for bad in [
            "a.b",
            "DNS:",
            "DNS:a b",
            "IP:1.2.3",
            "URI:nouri",
            "email:nobody",
            "otherName:x",
        ] {
            assert!(bad.parse::<SubjectAltName>().is_err(), "{bad:?}");
        }
    }
}
