//! Strict JSON for JOSE headers and claims (and every other JSON input keybound judges, such as the lines of a
//! provisioning batch): the value must be an object, and duplicate member names (at any depth) are an error
//! rather than "last one wins", so two parsers can never disagree about a token.

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
    parse_strict_object(bytes).map_err(|e| JoseError::malformed(what, e.to_string()))
}

/// Why [`parse_strict_object`] refused its input. Carries positions and (shortened) member names, never a
/// value from the input, so it may be shown to whoever sent the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StrictJsonError {
    /// Not well-formed JSON (a syntax error, the end of input too early, nesting too deep, a number out of
    /// range), at this 1-based line and column.
    Syntax {
        /// What the parser expected or found, in its own fixed words (`expected value`, `EOF while parsing a
        /// string`…), which never quote the input.
        reason: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
    },
    /// A member name appears twice in one object (at any depth).
    DuplicateMember {
        /// The name, shortened to printable ASCII ([`crate::sanitize_for_message`], 32 characters).
        name: String,
        /// Line of the second occurrence, from 1.
        line: usize,
        /// Column just after the second occurrence's name, from 1.
        column: usize,
    },
    /// Something other than whitespace follows the JSON value.
    TrailingCharacters {
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
    },
    /// Well-formed JSON, but not an object.
    NotAnObject,
}

impl std::fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax {
                reason,
                line,
                column,
            } => write!(f, "not valid JSON: {reason} (line {line}, column {column})"),
            Self::DuplicateMember { name, line, column } => write!(
                f,
                "duplicate member name {name:?} (line {line}, column {column}); each member may appear once"
            ),
            Self::TrailingCharacters { line, column } => write!(
                f,
                "trailing characters after the JSON value (line {line}, column {column})"
            ),
            Self::NotAnObject => f.write_str("not a JSON object"),
        }
    }
}

impl std::error::Error for StrictJsonError {}

/// Parses `bytes` as one JSON object, refusing duplicate member names at any depth (rather than keeping
/// the last one, as `serde_json` does) and anything after the object but whitespace. The rule of every JSON
/// input keybound judges: JOSE headers and claims, JWKs, and the lines of a provisioning batch.
///
/// ```
/// use jose_core::json::{StrictJsonError, parse_strict_object};
/// assert_eq!(parse_strict_object(br#"{"sub":"a"}"#).unwrap()["sub"], "a");
/// assert!(matches!(
///     parse_strict_object(br#"{"sub":"a","aud":"x","sub":"b"}"#),
///     Err(StrictJsonError::DuplicateMember { name, line: 1, .. }) if name == "sub"
/// ));
/// assert_eq!(parse_strict_object(b"[1]"), Err(StrictJsonError::NotAnObject));
/// ```
///
/// # Errors
/// [`StrictJsonError`] saying why, with the position.
pub fn parse_strict_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    let duplicate = std::cell::Cell::new(None);
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = Deserializer::deserialize_any(
        &mut json,
        StrictVisitor {
            duplicate: &duplicate,
        },
    )
    .map_err(|e| match duplicate.take() {
        Some(name) => StrictJsonError::DuplicateMember {
            name,
            line: e.line(),
            column: e.column(),
        },
        None => StrictJsonError::Syntax {
            reason: without_position(&e),
            line: e.line(),
            column: e.column(),
        },
    })?;
    json.end()
        .map_err(|e| StrictJsonError::TrailingCharacters {
            line: e.line(),
            column: e.column(),
        })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotAnObject),
    }
}

/// serde_json's message without the ` at line L column C` it appends (the position is kept apart). Its
/// syntax messages are fixed phrases that quote no input; the one custom message here is `number out of
/// range`. Capped at 80 characters all the same.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text);
    crate::error::sanitize_for_message(reason, 80)
}

/// Builds a [`Value`] like serde_json's own, but refuses a member name seen before in the same object and
/// records it in `duplicate` (so the error can name it without quoting the input).
#[derive(Clone, Copy)]
struct StrictVisitor<'a> {
    duplicate: &'a std::cell::Cell<Option<String>>,
}

impl<'de> de::DeserializeSeed<'de> for StrictVisitor<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
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
        while let Some(item) = seq.next_element_seed(self)? {
            v.push(item);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                self.duplicate.set(Some(crate::error::sanitize(&key)));
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(self)?;
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
        assert_eq!(
            parse_strict_object(b"{\"a\":1}\n x"),
            Err(StrictJsonError::TrailingCharacters { line: 2, column: 2 })
        );
        assert_eq!(
            parse_strict_object(b"{\"a\":{\"b\":1,\n\"b\":2}}"),
            Err(StrictJsonError::DuplicateMember {
                name: "b".into(),
                line: 2,
                column: 3
            })
        );
        let err = parse_strict_object(b"{\"x\":\"4111111111111111\",\"x\":1}").unwrap_err();
        assert!(!err.to_string().contains("4111"), "{err}");
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(
            parse_strict_object(format!(r#"{{"a":{deep}}}"#).as_bytes()),
            Err(StrictJsonError::Syntax { line: 1, .. })
        ));
        assert!(parse_object("claims", format!(r#"{{"a":{deep}}}"#).as_bytes()).is_err());
    }
}
