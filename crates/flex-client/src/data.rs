//! The `data` of a tokens request: card and order fields, typed as in Cybersource's example, plus arbitrary
//! extra fields at every level.
//!
//! Card number, security code and expiry are [`Sensitive`]: wiped on drop, `[redacted]` in `Debug`. The
//! `Debug` of every other type here lists which fields are present, never their values (names, e-mail
//! addresses and phone numbers are personal data). [`TokenizeData::validate`] checks shapes and the Luhn
//! digit and names the field at fault without echoing it. The tokens-request plaintext
//! (`{"data":…,"context":…,"index":0}`) is written into one pre-sized [`Zeroizing`] buffer so no stray copy
//! of the card number is left behind by reallocation, and the types on the path to the card are deserialized
//! field by field (serde's `flatten` would first copy the whole object, card number included, into buffers
//! that are never wiped).

use std::fmt;
use std::io::Write;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::FlexError;
use crate::sensitive::Sensitive;

fn present<'a>(pairs: &[(&'a str, bool)], extra: &'a Map<String, Value>) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| *n)
        .chain(extra.keys().map(String::as_str))
        .collect()
}

/// The `data` object of a tokens request.
#[derive(Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenizeData {
    /// Card data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_information: Option<PaymentInformation>,
    /// Amount, billing and shipping data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_information: Option<OrderInformation>,
    /// Further top-level fields (e.g. `deviceInformation`). Not for card data.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `paymentInformation`.
#[derive(Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInformation {
    /// The card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `paymentInformation.card`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    /// The card number (PAN).
    pub number: Sensitive,
    /// Expiry month, `01`–`12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_month: Option<Sensitive>,
    /// Expiry year, four digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_year: Option<Sensitive>,
    /// Security code (CVV), 3 or 4 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_code: Option<Sensitive>,
    /// Card type code (`001` Visa, `002` Mastercard…), or empty.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub card_type: Option<String>,
    /// Further fields (`typeSelectionIndicator`…). Not for secrets.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orderInformation`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInformation {
    /// Amount and currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_details: Option<AmountDetails>,
    /// Billing address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_to: Option<Address>,
    /// Shipping address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<Address>,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `orderInformation.amountDetails`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmountDetails {
    /// Total amount as a decimal string (`102.21`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<String>,
    /// ISO 4217 currency code (`USD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Further fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `billTo` / `shipTo`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address1: Option<String>,
    /// Second address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    /// Building number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building_number: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// State / province.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administrative_area: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Further fields (`company`…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TokenizeData {
    /// Empty data.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the `data` object from JSON (e.g. the example of Cybersource's documentation).
    ///
    /// # Errors
    /// [`FlexError::InvalidData`] naming what is wrong, never a value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FlexError> {
        serde_json::from_slice(bytes).map_err(|e| {
            FlexError::InvalidData(format!(
                "the data is not a valid tokens-request `data` object ({}, line {} column {})",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "not valid JSON",
                    _ => "a field has the wrong type or a required field is missing",
                },
                e.line(),
                e.column()
            ))
        })
    }

    /// Sets the card.
    #[must_use]
    pub fn card(mut self, card: Card) -> Self {
        self.payment_information
            .get_or_insert_with(Default::default)
            .card = Some(card);
        self
    }

    /// Sets the amount and currency.
    #[must_use]
    pub fn amount(mut self, total: impl Into<String>, currency: impl Into<String>) -> Self {
        self.order_information
            .get_or_insert_with(Default::default)
            .amount_details = Some(AmountDetails {
            total_amount: Some(total.into()),
            currency: Some(currency.into()),
            extra: Map::new(),
        });
        self
    }

    /// Sets the billing address.
    #[must_use]
    pub fn bill_to(mut self, address: Address) -> Self {
        self.order_information
            .get_or_insert_with(Default::default)
            .bill_to = Some(address);
        self
    }

    /// Sets the shipping address.
    #[must_use]
    pub fn ship_to(mut self, address: Address) -> Self {
        self.order_information
            .get_or_insert_with(Default::default)
            .ship_to = Some(address);
        self
    }

    /// Adds a top-level field.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// Checks the card fields: number 12–19 digits with a valid Luhn check digit, month `01`–`12`, year four
    /// digits, security code 3–4 digits (empty optional fields are allowed, as in Cybersource's example).
    ///
    /// # Errors
    /// [`FlexError::InvalidData`] naming the field, never its value.
    pub fn validate(&self) -> Result<(), FlexError> {
        let Some(card) = self
            .payment_information
            .as_ref()
            .and_then(|p| p.card.as_ref())
        else {
            return Err(FlexError::InvalidData(
                "paymentInformation.card is missing".into(),
            ));
        };
        card.validate()
    }

    /// The tokens-request plaintext `{"data":…,"context":"…","index":0}` in one wiped buffer.
    pub(crate) fn tokens_plaintext(&self, context: &str) -> Result<Zeroizing<Vec<u8>>, FlexError> {
        let write = |w: &mut dyn Write| -> Result<(), FlexError> {
            let fail = |_| FlexError::InvalidData("the data cannot be serialized".into());
            w.write_all(b"{\"data\":")
                .map_err(|_| FlexError::InvalidData("write".into()))?;
            serde_json::to_writer(&mut *w, self).map_err(fail)?;
            w.write_all(b",\"context\":")
                .map_err(|_| FlexError::InvalidData("write".into()))?;
            serde_json::to_writer(&mut *w, context).map_err(fail)?;
            w.write_all(b",\"index\":0}")
                .map_err(|_| FlexError::InvalidData("write".into()))?;
            Ok(())
        };
        let mut counter = Counter(0);
        write(&mut counter)?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(counter.0));
        write(&mut *buffer)?;
        debug_assert_eq!(buffer.len(), counter.0);
        Ok(buffer)
    }
}

/// A writer that only counts bytes.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Card {
    /// A card with this number.
    #[must_use]
    pub fn new(number: impl Into<Sensitive>) -> Self {
        Self {
            number: number.into(),
            expiration_month: None,
            expiration_year: None,
            security_code: None,
            card_type: None,
            extra: Map::new(),
        }
    }

    /// Sets the expiry (`"12"`, `"2031"`).
    #[must_use]
    pub fn expiration(mut self, month: impl Into<Sensitive>, year: impl Into<Sensitive>) -> Self {
        self.expiration_month = Some(month.into());
        self.expiration_year = Some(year.into());
        self
    }

    /// Sets the security code.
    #[must_use]
    pub fn security_code(mut self, code: impl Into<Sensitive>) -> Self {
        self.security_code = Some(code.into());
        self
    }

    /// Sets the card type code.
    #[must_use]
    pub fn card_type(mut self, code: impl Into<String>) -> Self {
        self.card_type = Some(code.into());
        self
    }

    /// See [`TokenizeData::validate`].
    ///
    /// # Errors
    /// [`FlexError::InvalidData`].
    pub fn validate(&self) -> Result<(), FlexError> {
        let bad = |m: &str| Err(FlexError::InvalidData(m.into()));
        let number = self.number.expose();
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            return bad("paymentInformation.card.number must be 12 to 19 digits without spaces");
        }
        if !luhn(number) {
            return bad("paymentInformation.card.number fails the Luhn check; it was mistyped");
        }
        if let Some(m) = self.expiration_month.as_ref().filter(|m| !m.is_empty()) {
            let ok = m.len() == 2
                && m.expose()
                    .parse::<u8>()
                    .is_ok_and(|v| (1..=12).contains(&v));
            if !ok {
                return bad("paymentInformation.card.expirationMonth must be two digits 01 to 12");
            }
        }
        if let Some(y) = self.expiration_year.as_ref().filter(|y| !y.is_empty()) {
            if y.len() != 4 || !y.expose().bytes().all(|b| b.is_ascii_digit()) {
                return bad("paymentInformation.card.expirationYear must be four digits");
            }
        }
        if let Some(c) = self.security_code.as_ref().filter(|c| !c.is_empty()) {
            if !(3..=4).contains(&c.len()) || !c.expose().bytes().all(|b| b.is_ascii_digit()) {
                return bad("paymentInformation.card.securityCode must be 3 or 4 digits");
            }
        }
        Ok(())
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

impl Address {
    /// An empty address.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets first and last name.
    #[must_use]
    pub fn name(mut self, first: impl Into<String>, last: impl Into<String>) -> Self {
        self.first_name = Some(first.into());
        self.last_name = Some(last.into());
        self
    }

    /// Sets street, city, state, postal code and country.
    #[must_use]
    pub fn postal(
        mut self,
        address1: impl Into<String>,
        locality: impl Into<String>,
        administrative_area: impl Into<String>,
        postal_code: impl Into<String>,
        country: impl Into<String>,
    ) -> Self {
        self.address1 = Some(address1.into());
        self.locality = Some(locality.into());
        self.administrative_area = Some(administrative_area.into());
        self.postal_code = Some(postal_code.into());
        self.country = Some(country.into());
        self
    }

    /// Sets the e-mail address.
    #[must_use]
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the phone number.
    #[must_use]
    pub fn phone_number(mut self, phone: impl Into<String>) -> Self {
        self.phone_number = Some(phone.into());
        self
    }

    /// Adds a further field.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }
}

/// Deserializes a map field by field: `known` handles the keys it knows (returning false for others), the
/// rest go to `extra`.
fn visit_fields<'de, A, F>(
    mut map: A,
    extra: &mut Map<String, Value>,
    mut known: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    while let Some(key) = map.next_key::<String>()? {
        if !known(&key, &mut map)? {
            let value: Value = map.next_value()?;
            if extra.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate field"));
            }
        }
    }
    Ok(())
}

fn set<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<bool, A::Error> {
    if slot.is_some() {
        return Err(A::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

impl<'de> Deserialize<'de> for TokenizeData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TokenizeData;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the tokens-request `data` object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TokenizeData, A::Error> {
                let mut out = TokenizeData::default();
                let (mut payment, mut order) = (None, None);
                visit_fields(map, &mut out.extra, |key, map| match key {
                    "paymentInformation" => set(&mut payment, "paymentInformation", map),
                    "orderInformation" => set(&mut order, "orderInformation", map),
                    _ => Ok(false),
                })?;
                out.payment_information = payment;
                out.order_information = order;
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for PaymentInformation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PaymentInformation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the `paymentInformation` object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PaymentInformation, A::Error> {
                let mut out = PaymentInformation::default();
                let mut card = None;
                visit_fields(map, &mut out.extra, |key, map| match key {
                    "card" => set(&mut card, "card", map),
                    _ => Ok(false),
                })?;
                out.card = card;
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Card {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Card;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the `card` object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Card, A::Error> {
                let mut extra = Map::new();
                let (mut number, mut month, mut year, mut code, mut kind) =
                    (None, None, None, None, None);
                visit_fields(map, &mut extra, |key, map| match key {
                    "number" => set(&mut number, "number", map),
                    "expirationMonth" => set(&mut month, "expirationMonth", map),
                    "expirationYear" => set(&mut year, "expirationYear", map),
                    "securityCode" => set(&mut code, "securityCode", map),
                    "type" => set(&mut kind, "type", map),
                    _ => Ok(false),
                })?;
                Ok(Card {
                    number: number.ok_or_else(|| A::Error::missing_field("number"))?,
                    expiration_month: month,
                    expiration_year: year,
                    security_code: code,
                    card_type: kind,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl fmt::Debug for TokenizeData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizeData")
            .field("payment_information", &self.payment_information)
            .field("order_information", &self.order_information)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for PaymentInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentInformation")
            .field("card", &self.card)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("number", &self.number)
            .field("expiration_month", &self.expiration_month)
            .field("expiration_year", &self.expiration_year)
            .field("security_code", &self.security_code)
            .field("card_type", &self.card_type)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for OrderInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderInformation")
            .field("amount_details", &self.amount_details)
            .field("bill_to", &self.bill_to)
            .field("ship_to", &self.ship_to)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for AmountDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Amounts are not personal data.
        f.debug_struct("AmountDetails")
            .field("total_amount", &self.total_amount)
            .field("currency", &self.currency)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = present(
            &[
                ("firstName", self.first_name.is_some()),
                ("lastName", self.last_name.is_some()),
                ("address1", self.address1.is_some()),
                ("address2", self.address2.is_some()),
                ("buildingNumber", self.building_number.is_some()),
                ("locality", self.locality.is_some()),
                ("administrativeArea", self.administrative_area.is_some()),
                ("postalCode", self.postal_code.is_some()),
                ("country", self.country.is_some()),
                ("email", self.email.is_some()),
                ("phoneNumber", self.phone_number.is_some()),
            ],
            &self.extra,
        );
        f.debug_struct("Address")
            .field("fields_present", &fields)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_DATA: &str = r#"{ "paymentInformation": { "card": { "number": "4111111111111111", "expirationMonth": "12", "expirationYear": "2031", "type": "", "securityCode": "" } }, "orderInformation": { "amountDetails": { "totalAmount": "102.21", "currency": "USD" }, "billTo": { "firstName": "John", "lastName": "Doe", "address1": "1 Market St", "locality": "san francisco", "administrativeArea": "CA", "postalCode": "94105", "country": "US", "email": "", "phoneNumber": "4158880000" } } }"#;

    #[test]
    fn seed_data_round_trips_and_debug_hides_everything_personal() {
        let data = TokenizeData::from_json(SEED_DATA.as_bytes()).unwrap();
        data.validate().unwrap();
        let again: Value = serde_json::to_value(&data).unwrap();
        let original: Value = serde_json::from_str(SEED_DATA).unwrap();
        assert_eq!(again, original);
        let debug = format!("{data:?}");
        for secret in [
            "4111111111111111",
            "2031",
            "John",
            "Doe",
            "Market",
            "94105",
            "4158880000",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert!(
            debug.contains("[redacted]") && debug.contains("firstName"),
            "{debug}"
        );
    }

    #[test]
    fn plaintext_is_exact_and_presized() {
        let data = TokenizeData::new().card(Card::new("4111111111111111").expiration("12", "2031"));
        let p = data.tokens_plaintext("a.b.c").unwrap();
        assert_eq!(p.capacity(), p.len());
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["index"], 0);
        assert_eq!(v["context"], "a.b.c");
        assert_eq!(
            v["data"]["paymentInformation"]["card"]["number"],
            "4111111111111111"
        );
    }

    #[test]
    fn validation_names_the_field_not_the_value() {
        for (card, field) in [
            (Card::new("4111111111111112"), "Luhn"),
            (Card::new("4111 1111 1111 1111"), "number"),
            (
                Card::new("4111111111111111").expiration("13", "2031"),
                "expirationMonth",
            ),
            (
                Card::new("4111111111111111").expiration("12", "31"),
                "expirationYear",
            ),
            (
                Card::new("4111111111111111").security_code("12345"),
                "securityCode",
            ),
        ] {
            let e = card.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
            assert!(!e.contains("4111"), "{e}");
        }
        assert!(TokenizeData::new().validate().is_err());
        let e = TokenizeData::from_json(
            br#"{"paymentInformation":{"card":{"number":4111111111111111}}}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("4111"), "{e}");
    }
}
