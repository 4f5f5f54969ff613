//! The card data an issuer pushes to a wallet: `issuerCardRefId` (the authorization code's `sub`, never
//! the PAN), `fpan`, `exp` (MMYY), `cardHolderName` (at most 27 characters, the Mastercard limit, applied to
//! every card), and the Click to Pay extras `postalAddress`, `phoneNumber`, `phoneNumberCountryCode`,
//! `email`.
//!
//! Invariants: every card value lives in a [`SecretString`] (wiped on drop) and `Debug` prints none of
//! them; validation errors name the field and the rule, never the value; the JSON plaintext is written
//! into a `Zeroizing` buffer sized up front so it is not reallocated (and copied) while it grows.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ProvisioningError, check_identifier};

/// Longest `issuerCardRefId` Thales accepts.
pub const MAX_ISSUER_CARD_REF_ID_LEN: usize = 48;
/// Longest `cardHolderName`: the Mastercard limit.
pub const MAX_CARD_HOLDER_NAME_LEN: usize = 27;

/// A cardholder's postal address (`postalAddress`; required for Click to Pay). Field lengths follow the
/// Thales guide: `line1`/`line2` at most 64, `city` at most 32, `postalCode` at most 10 characters. `state`
/// and `country` are sent only when set; confirm their spelling with Thales at onboarding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct PostalAddress {
    /// First line.
    pub line1: SecretString,
    /// Second line.
    #[serde(default)]
    pub line2: Option<SecretString>,
    /// City.
    pub city: SecretString,
    /// Postal code.
    pub postal_code: SecretString,
    /// State or province.
    #[serde(default)]
    pub state: Option<SecretString>,
    /// Country code.
    #[serde(default)]
    pub country: Option<SecretString>,
}

impl PostalAddress {
    /// An address with its mandatory lines.
    #[must_use]
    pub fn new(
        line1: impl Into<String>,
        city: impl Into<String>,
        postal_code: impl Into<String>,
    ) -> Self {
        Self {
            line1: SecretString::from(line1.into()),
            line2: None,
            city: SecretString::from(city.into()),
            postal_code: SecretString::from(postal_code.into()),
            state: None,
            country: None,
        }
    }

    /// Sets `line2`.
    #[must_use]
    pub fn line2(mut self, line2: impl Into<String>) -> Self {
        self.line2 = Some(SecretString::from(line2.into()));
        self
    }

    /// Sets `state`.
    #[must_use]
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(SecretString::from(state.into()));
        self
    }

    /// Sets `country`.
    #[must_use]
    pub fn country(mut self, country: impl Into<String>) -> Self {
        self.country = Some(SecretString::from(country.into()));
        self
    }

    fn validate(&self) -> Result<(), ProvisioningError> {
        check_text("postalAddress.line1", &self.line1, 64)?;
        if let Some(l) = &self.line2 {
            check_text("postalAddress.line2", l, 64)?;
        }
        check_text("postalAddress.city", &self.city, 32)?;
        check_text("postalAddress.postalCode", &self.postal_code, 10)?;
        if let Some(s) = &self.state {
            check_text("postalAddress.state", s, 64)?;
        }
        if let Some(c) = &self.country {
            check_text("postalAddress.country", c, 3)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PostalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostalAddress(<redacted>)")
    }
}

/// The card data of one push-provisioning request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CardData {
    /// The issuer's reference of the card; equals the authorization code's `sub`. Not the PAN.
    pub issuer_card_ref_id: String,
    /// The funding PAN: 13 to 19 digits passing the Luhn check.
    pub fpan: SecretString,
    /// Expiry as MMYY.
    pub exp: SecretString,
    /// The name as printed on the card, at most 27 characters.
    pub card_holder_name: SecretString,
    /// Billing address (Click to Pay).
    #[serde(default)]
    pub postal_address: Option<PostalAddress>,
    /// Phone number without country code, at most 16 characters (Click to Pay).
    #[serde(default)]
    pub phone_number: Option<SecretString>,
    /// The phone number's country code, e.g. `33`, at most 4 digits (Click to Pay).
    #[serde(default)]
    pub phone_number_country_code: Option<SecretString>,
    /// Email, at most 48 characters (Click to Pay).
    #[serde(default)]
    pub email: Option<SecretString>,
}

impl fmt::Debug for CardData {
    /// Only which optional parts are present; no card value, not even the reference id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData")
            .field("fpan", &"<redacted>")
            .field("postal_address", &self.postal_address.is_some())
            .field("phone_number", &self.phone_number.is_some())
            .field("email", &self.email.is_some())
            .finish_non_exhaustive()
    }
}

impl CardData {
    /// Card data with the mandatory fields. Call [`CardData::validate`] (encryption does) to check them.
    #[must_use]
    pub fn new(
        issuer_card_ref_id: impl Into<String>,
        fpan: SecretString,
        exp: SecretString,
        card_holder_name: SecretString,
    ) -> Self {
        Self {
            issuer_card_ref_id: issuer_card_ref_id.into(),
            fpan,
            exp,
            card_holder_name,
            postal_address: None,
            phone_number: None,
            phone_number_country_code: None,
            email: None,
        }
    }

    /// Sets `postalAddress`.
    #[must_use]
    pub fn postal_address(mut self, address: PostalAddress) -> Self {
        self.postal_address = Some(address);
        self
    }

    /// Sets `phoneNumber` (without country code) and, optionally, `phoneNumberCountryCode`.
    #[must_use]
    pub fn phone_number(
        mut self,
        number: SecretString,
        country_code: Option<SecretString>,
    ) -> Self {
        self.phone_number = Some(number);
        self.phone_number_country_code = country_code;
        self
    }

    /// Sets `email`.
    #[must_use]
    pub fn email(mut self, email: SecretString) -> Self {
        self.email = Some(email);
        self
    }

    /// Parses card data from its JSON form (Thales field names, camelCase). Errors name the problem and its
    /// position, never a value.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] for malformed JSON, unknown or missing fields, wrong types, and
    /// every rule of [`CardData::validate`].
    pub fn from_json(json: &[u8]) -> Result<Self, ProvisioningError> {
        let card: Self = serde_json::from_slice(json).map_err(|e| json_error(&e))?;
        card.validate()?;
        Ok(card)
    }

    /// Checks every field against the Thales rules.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] naming the first field that breaks a rule.
    pub fn validate(&self) -> Result<(), ProvisioningError> {
        check_issuer_card_ref_id(&self.issuer_card_ref_id)?;
        let pan = self.fpan.expose_secret();
        if !(13..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProvisioningError::field(
                "fpan",
                "must be 13 to 19 digits, without spaces or separators",
            ));
        }
        if !luhn_ok(pan) {
            return Err(ProvisioningError::field(
                "fpan",
                "fails the Luhn check; check the number for a typo",
            ));
        }
        if pan == self.issuer_card_ref_id {
            return Err(ProvisioningError::field(
                "issuerCardRefId",
                "must not be the PAN; use the issuer's own reference of the card",
            ));
        }
        let exp = self.exp.expose_secret().as_bytes();
        let month_ok = exp.len() == 4
            && exp.iter().all(u8::is_ascii_digit)
            && matches!((exp[0] - b'0') * 10 + (exp[1] - b'0'), 1..=12);
        if !month_ok {
            return Err(ProvisioningError::field(
                "exp",
                "must be MMYY: four digits with a month from 01 to 12",
            ));
        }
        check_text(
            "cardHolderName",
            &self.card_holder_name,
            MAX_CARD_HOLDER_NAME_LEN,
        )?;
        if let Some(a) = &self.postal_address {
            a.validate()?;
        }
        if let Some(p) = &self.phone_number {
            check_text("phoneNumber", p, 16)?;
            if !p
                .expose_secret()
                .bytes()
                .all(|b| b.is_ascii_digit() || b" -.()".contains(&b))
            {
                return Err(ProvisioningError::field(
                    "phoneNumber",
                    "must hold digits (spaces, dots, dashes and parentheses allowed), without the country code",
                ));
            }
        }
        if let Some(c) = &self.phone_number_country_code {
            let c = c.expose_secret();
            if c.is_empty() || c.len() > 4 || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ProvisioningError::field(
                    "phoneNumberCountryCode",
                    "must be 1 to 4 digits, e.g. 33",
                ));
            }
        }
        if let Some(e) = &self.email {
            check_text("email", e, 48)?;
            let e = e.expose_secret();
            let at_ok = e
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !at_ok || e.chars().any(char::is_whitespace) {
                return Err(ProvisioningError::field(
                    "email",
                    "must look like name@example.com",
                ));
            }
        }
        Ok(())
    }

    /// The JSON plaintext of the enrollment payload, in a buffer wiped on drop.
    ///
    /// # Errors
    /// As [`CardData::validate`].
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, ProvisioningError> {
        self.validate()?;
        let s = |v: &SecretString| v.expose_secret().len();
        let o = |v: &Option<SecretString>| v.as_ref().map_or(0, s);
        let mut estimate = 256 + self.issuer_card_ref_id.len() + s(&self.fpan) + s(&self.exp);
        estimate +=
            s(&self.card_holder_name) + o(&self.phone_number) + o(&self.phone_number_country_code);
        estimate += o(&self.email);
        if let Some(a) = &self.postal_address {
            estimate += 128
                + s(&a.line1)
                + o(&a.line2)
                + s(&a.city)
                + s(&a.postal_code)
                + o(&a.state)
                + o(&a.country);
        }
        // JSON escaping at most sextuples a character (control characters are refused, so this is generous).
        let mut out = Zeroizing::new(Vec::with_capacity(estimate * 6));
        serde_json::to_writer(&mut *out, &self.wire())
            .map_err(|_| ProvisioningError::field("card data", "could not be serialized"))?;
        Ok(out)
    }

    fn wire(&self) -> Wire<'_> {
        fn e(v: &Option<SecretString>) -> Option<&str> {
            v.as_ref().map(ExposeSecret::expose_secret)
        }
        Wire {
            issuer_card_ref_id: &self.issuer_card_ref_id,
            fpan: self.fpan.expose_secret(),
            exp: self.exp.expose_secret(),
            card_holder_name: self.card_holder_name.expose_secret(),
            postal_address: self.postal_address.as_ref().map(|a| WireAddress {
                line1: a.line1.expose_secret(),
                line2: e(&a.line2),
                city: a.city.expose_secret(),
                postal_code: a.postal_code.expose_secret(),
                state: e(&a.state),
                country: e(&a.country),
            }),
            phone_number: e(&self.phone_number),
            phone_number_country_code: e(&self.phone_number_country_code),
            email: e(&self.email),
        }
    }
}

/// The serialized form; borrows the exposed secrets only while writing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    issuer_card_ref_id: &'a str,
    fpan: &'a str,
    exp: &'a str,
    card_holder_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_address: Option<WireAddress<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number_country_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireAddress<'a> {
    line1: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<&'a str>,
    city: &'a str,
    postal_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
}

/// Checks an issuerCardRefId — the card data's `issuerCardRefId` and the `sub` of an authorization code for
/// push provisioning, which must be the same value: present, at most [`MAX_ISSUER_CARD_REF_ID_LEN`] (48)
/// characters, no control characters, no surrounding whitespace. The one rule both use, so `auth-code` never
/// signs a `sub` that the card data would refuse.
///
/// ```
/// use provisioning_signer::card::check_issuer_card_ref_id;
/// assert!(check_issuer_card_ref_id("card-ref-000123").is_ok());
/// assert!(check_issuer_card_ref_id(&"x".repeat(48)).is_ok());
/// assert!(check_issuer_card_ref_id(&"x".repeat(49)).is_err());
/// ```
///
/// # Errors
/// [`ProvisioningError::InvalidField`] for `issuerCardRefId`, naming the rule, never the value.
pub fn check_issuer_card_ref_id(value: &str) -> Result<(), ProvisioningError> {
    check_identifier("issuerCardRefId", value, MAX_ISSUER_CARD_REF_ID_LEN)
}

fn check_text(
    field: &'static str,
    value: &SecretString,
    max: usize,
) -> Result<(), ProvisioningError> {
    let v = value.expose_secret();
    if v.trim().is_empty() {
        return Err(ProvisioningError::field(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(ProvisioningError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ProvisioningError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Whether `value` looks like a card number: 13 to 19 ASCII digits passing the Luhn check. Used to keep PANs
/// out of places that must not hold one (an authorization code's `sub`).
pub(crate) fn looks_like_pan(value: &str) -> bool {
    (13..=19).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) && luhn_ok(value)
}

/// The Luhn (mod 10) check of a digit string.
fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// A serde_json error as a message without the offending value: serde's own text can quote it (e.g.
/// `invalid type: string "4111…"`), so only the category, position and, for missing fields, the name are kept.
pub(crate) fn json_error(e: &serde_json::Error) -> ProvisioningError {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", e.line(), e.column());
    let reason = match e.classify() {
        Category::Syntax | Category::Eof => format!("not valid JSON ({at})"),
        Category::Io => "could not be read".to_owned(),
        Category::Data => {
            let text = e.to_string();
            let missing = text
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map(|(name, _)| name)
                .filter(|name| {
                    name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if let Some(name) = missing {
                format!("the field `{name}` is missing")
            } else if text.starts_with("unknown field") {
                format!(
                    "unknown field ({at}); the fields are issuerCardRefId, fpan, exp, cardHolderName, postalAddress, \
                     phoneNumber, phoneNumberCountryCode, email"
                )
            } else {
                format!(
                    "a value has the wrong type ({at}); card fields are JSON strings, postalAddress an object"
                )
            }
        }
    };
    ProvisioningError::field("card data", reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pan_lookalikes() {
        for pan in [
            "4111111111111111",
            "5555555555554444",
            "4222222222222",
            "6011000990139424",
        ] {
            assert!(looks_like_pan(pan), "{pan}");
        }
        for not in [
            "4111111111111112",     // Luhn fails
            "411111111111",         // 12 digits
            "41111111111111111110", // 20 digits
            "4111 1111 1111 1111",  // separators: not a bare card number
            "card-4111111111111111",
            "",
        ] {
            assert!(!looks_like_pan(not), "{not}");
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_ok("4111111111111111"));
        assert!(luhn_ok("5555555555554444"));
        assert!(!luhn_ok("4111111111111112"));
    }
}
