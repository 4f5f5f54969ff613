//! Strict JSON for JOSE headers and claims: the value must be an object, and duplicate member names (at any
//! depth) are an error rather than "last one wins", so two parsers can never disagree about a token.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::JoseError;

/// A JSON object (header or claims).
pub type JsonObject = Map<String, Value>;

/// Parses `bytes` as a JSON object, refusing duplicate member names.
///
/// # Errors
/// [`JoseError::Malformed`] naming `what`.
pub fn parse_object(what: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, JoseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize_strict(&mut de)
        .map_err(|e| JoseError::malformed(what, short(&e)))?;
    de.end()
        .map_err(|_| JoseError::malformed(what, "trailing characters after the JSON value"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JoseError::malformed(what, "not a JSON object")),
    }
}

fn short(e: &serde_json::Error) -> String {
    // serde_json messages carry positions, not input; keep them short anyway.
    let s = e.to_string();
    s.chars().take(120).collect()
}

struct StrictValue;

impl StrictValue {
    fn deserialize_strict<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

struct Seed;

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed)? {
            v.push(item);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(Seed)?;
            m.insert(key, value);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_and_non_objects() {
        assert!(parse_object("header", br#"{"alg":"RS256"}"#).is_ok());
        assert!(parse_object("header", br#"{"alg":"RS256","alg":"none"}"#).is_err());
        assert!(parse_object("header", br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(parse_object("header", br#"["alg"]"#).is_err());
        assert!(parse_object("header", br#""x""#).is_err());
        assert!(parse_object("header", br#"{"a":1} x"#).is_err());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse_object("claims", format!(r#"{{"a":{deep}}}"#).as_bytes()).is_err());
    }
}
