//! The settings loader: a TOML file overlaid with `KEYBOUND_…` environment variables, deserialized into
//! strictly typed structs (`Settings` in `context.rs` and the `[keycloak]`, `[flex]`, `[provisioning]`
//! section structs).
//!
//! Rules (docs/configuration.md, "How settings are found"):
//! - `KEYBOUND_<KEY>` sets a top-level key, `KEYBOUND_<SECTION>__<KEY>` a key of a section (`__` = nesting;
//!   names are case-insensitive). A variable overrides the file; an empty variable counts as unset.
//! - A variable's value is a **string**. It is parsed only where the setting's type is a number (`ttl`,
//!   `timeout`, …) or a boolean (`true`/`false` only); a value that does not parse is an error naming the
//!   variable (`KEYBOUND_KEYCLOAK__TIMEOUT: expected an integer, got "abc"`). Identifiers stay exactly as
//!   written: `00012345` is never rewritten to `12345`. Lists: `pkcs11_allowed_modules` separated by `:`,
//!   other lists by `,`.
//! - Unknown keys are refused, in the file and in the variables, at the top level and in every section,
//!   naming the key and the closest known one. Variables with `__` are always settings; a single-segment
//!   `KEYBOUND_X` is a setting when `x` is a top-level key, and refused when it is one or two letters away
//!   from one (`KEYBOUND_PKCS11_MODUL`); other such variables (the CLI's own `KEYBOUND_CONFIG`, `KEYBOUND_LOG`,
//!   `KEYBOUND_LOG_FORMAT`, variables named by `env:VAR` key references, the tests' variables) are not
//!   settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::value::{SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

/// Environment variables that belong to the CLI's global flags, not to the settings.
const GLOBAL_FLAG_VARIABLES: [&str; 3] = ["config", "log", "log_format"];

/// The prefix of every settings variable.
const PREFIX: &str = "KEYBOUND_";

/// A configuration error: where (the file and key, or the variable), what, and an optional hint.
#[derive(Debug)]
pub struct Error {
    location: Option<String>,
    message: String,
    hint: Option<String>,
    /// Set by [`de::Error::unknown_field`]: the key is unknown (the map adds the section and location).
    unknown: Option<String>,
}

impl Error {
    fn new(message: impl fmt::Display) -> Self {
        Self {
            location: None,
            message: message.to_string(),
            hint: None,
            unknown: None,
        }
    }

    fn at(mut self, location: impl FnOnce() -> String) -> Self {
        if self.location.is_none() {
            self.location = Some(location());
        }
        self
    }

    /// The optional second line (`did you mean …`).
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::new(format_args!("unknown key `{field}`"));
        e.unknown = Some(field.to_owned());
        e.hint = Some(suggestion(field, expected));
        e
    }
}

/// `did you mean `ttl`?` for the closest known key, else the list of known keys.
fn suggestion(field: &str, known: &[&str]) -> String {
    match closest(field, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!(
            "known keys: {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The known key nearest to `field` (edit distance at most a third of its length, at least 2), if any.
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (field.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (levenshtein(field, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Where a value came from.
#[derive(Debug, Clone)]
enum Origin {
    File,
    Env(String),
}

#[derive(Debug)]
enum Node {
    Table(BTreeMap<String, Entry>),
    /// A typed TOML value from the file (never a table: those become [`Node::Table`]).
    File(toml::Value),
    /// The string value of an environment variable.
    Env(String),
}

#[derive(Debug)]
struct Entry {
    origin: Origin,
    node: Node,
}

fn from_toml(table: toml::Table) -> BTreeMap<String, Entry> {
    table
        .into_iter()
        .map(|(k, v)| {
            let node = match v {
                toml::Value::Table(t) => Node::Table(from_toml(t)),
                other => Node::File(other),
            };
            (
                k,
                Entry {
                    origin: Origin::File,
                    node,
                },
            )
        })
        .collect()
}

/// Loads `T` from the TOML text of `file` (its name for messages, and its contents) overlaid with the
/// `KEYBOUND_…` variables of `env`.
pub fn load<T: DeserializeOwned>(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, Error> {
    let file_name = file.map_or_else(String::new, |(p, _)| p.display().to_string());
    let mut root = match file {
        Some((path, text)) => from_toml(text.parse::<toml::Table>().map_err(|e| {
            Error::new(format_args!(
                "configuration file {} is not valid TOML: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })?),
        None => BTreeMap::new(),
    };
    let top_level = struct_fields::<T>();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, value)| name.starts_with(PREFIX) && !value.is_empty())
        .collect();
    vars.sort();
    for (var, value) in vars {
        let name = var[PREFIX.len()..].to_ascii_lowercase();
        let path: Vec<&str> = name.split("__").collect();
        if path.len() == 1 && !top_level.contains(&name.as_str()) {
            if GLOBAL_FLAG_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            // One or two letters away from a setting: a typo, refused. Anything else is not a setting
            // (a key for `env:VAR`, a test's variable).
            match closest(&name, top_level) {
                Some(best) if levenshtein(&name, best) <= 2 => {
                    let mut e = Error::new(format_args!("unknown setting `{name}`"));
                    e.location = Some(var.clone());
                    e.hint = Some(format!(
                        "did you mean `{best}` ({PREFIX}{})?",
                        best.to_ascii_uppercase()
                    ));
                    return Err(e);
                }
                _ => continue,
            }
        }
        insert(&mut root, &path, &var, value);
    }
    T::deserialize(NodeDe {
        node: Node::Table(root),
        key: String::new(),
        file: &file_name,
    })
}

fn insert(table: &mut BTreeMap<String, Entry>, path: &[&str], var: &str, value: String) {
    let origin = Origin::Env(var.to_owned());
    match path {
        [] => {}
        [last] => {
            table.insert(
                (*last).to_owned(),
                Entry {
                    origin,
                    node: Node::Env(value),
                },
            );
        }
        [first, rest @ ..] => {
            let entry = table.entry((*first).to_owned()).or_insert_with(|| Entry {
                origin: origin.clone(),
                node: Node::Table(BTreeMap::new()),
            });
            if !matches!(entry.node, Node::Table(_)) {
                *entry = Entry {
                    origin,
                    node: Node::Table(BTreeMap::new()),
                };
            }
            if let Node::Table(t) = &mut entry.node {
                insert(t, rest, var, value);
            }
        }
    }
}

/// The field names of a struct `T` deserializes from (empty for other types).
pub(crate) fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(&'static [&'static str]);
    struct FieldsDe<'p>(&'p mut Probe);
    impl<'de> de::Deserializer<'de> for FieldsDe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(FieldsDe(&mut probe));
    probe.0
}

/// Deserializes one node; `key` is the name it is stored under (for list separators), `file` the file name.
struct NodeDe<'f> {
    node: Node,
    key: String,
    file: &'f str,
}

impl<'de> IntoDeserializer<'de, Error> for NodeDe<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

struct TableAccess<'f> {
    entries: std::collections::btree_map::IntoIter<String, Entry>,
    current: Option<(String, Entry)>,
    /// Dotted path of this table (empty at the top level).
    section: String,
    file: &'f str,
}

impl TableAccess<'_> {
    fn dotted(&self, key: &str) -> String {
        if self.section.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.section)
        }
    }

    fn locate(&self, origin: &Origin, key: &str) -> String {
        match origin {
            Origin::Env(var) => var.clone(),
            Origin::File => format!("configuration file {}: `{}`", self.file, self.dotted(key)),
        }
    }
}

impl<'de> MapAccess<'de> for TableAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, entry)) = self.entries.next() else {
            return Ok(None);
        };
        let result = seed.deserialize(StringDeserializer::<Error>::new(key.clone()));
        let result = result.map_err(|mut e| {
            if e.unknown.is_some() {
                let place = if self.section.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in [{}]", self.section)
                };
                e.message = format!("{} {place}", e.message);
                e.location = Some(match &entry.origin {
                    Origin::Env(var) => var.clone(),
                    Origin::File => format!("configuration file {}", self.file),
                });
            }
            e.at(|| self.locate(&entry.origin, &key))
        })?;
        self.current = Some((key, entry));
        Ok(Some(result))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, entry) = self
            .current
            .take()
            .ok_or_else(|| Error::new("value requested before its key"))?;
        let origin = entry.origin.clone();
        seed.deserialize(NodeDe {
            node: entry.node,
            key: self.dotted(&key),
            file: self.file,
        })
        .map_err(|e| e.at(|| self.locate(&origin, &key)))
    }
}

fn env_parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Error> {
    s.trim()
        .parse()
        .map_err(|_| Error::new(format_args!("expected {what}, got {s:?}")))
}

macro_rules! number {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.node {
                Node::Env(s) => visitor.$visit(env_parse::<$ty>(&s, $what)?),
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Table(t) => visitor.visit_map(TableAccess {
                entries: t.into_iter(),
                current: None,
                section: self.key,
                file: self.file,
            }),
            Node::File(v) => v
                .deserialize_any(visitor)
                .map_err(|e| Error::new(e.to_string().trim_end())),
            Node::Env(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env(s) => match s.as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => Err(Error::new(format_args!(
                    "expected true or false, got {s:?}"
                ))),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    number! {
        deserialize_i8 visit_i8 i8, "an integer";
        deserialize_i16 visit_i16 i16, "an integer";
        deserialize_i32 visit_i32 i32, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u8 u8, "an integer";
        deserialize_u16 visit_u16 u16, "an integer";
        deserialize_u32 visit_u32 u32, "an integer";
        deserialize_u64 visit_u64 u64, "an integer";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env(s) => {
                let separator = if self.key == "pkcs11_allowed_modules" {
                    ':'
                } else {
                    ','
                };
                let file = self.file;
                let key = self.key;
                let items: Vec<NodeDe<'_>> = s
                    .split(separator)
                    .filter(|item| !item.is_empty())
                    .map(|item| NodeDe {
                        node: Node::Env(item.to_owned()),
                        key: key.clone(),
                        file,
                    })
                    .collect();
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Env(s) => visitor.visit_enum(StringDeserializer::<Error>::new(s)),
            Node::File(v) => v
                .deserialize_enum(name, variants, visitor)
                .map_err(|e| Error::new(e.to_string().trim_end())),
            Node::Table(_) => Err(Error::new(format_args!(
                "expected one of {}, found a table",
                variants.join(", ")
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Table(_) => self.deserialize_any(visitor),
            Node::Env(_) => Err(Error::new(
                "this is a section: set its keys with KEYBOUND_<SECTION>__<KEY>",
            )),
            Node::File(_) => Err(Error::new("expected a table (a [section])")),
        }
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use serde::Deserialize;

    use super::{Error, load};

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        name: Option<String>,
        ttl: Option<u64>,
        on: bool,
        origins: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Top {
        key: Option<String>,
        pkcs11_module: Option<PathBuf>,
        pkcs11_allowed_modules: Vec<PathBuf>,
        keys: BTreeMap<String, String>,
        sec: Section,
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn from(file: &str, vars: &[(&str, &str)]) -> Result<Top, Error> {
        load(Some((Path::new("k.toml"), file)), env(vars))
    }

    fn full(e: &Error) -> String {
        format!("{e} / {}", e.hint().unwrap_or(""))
    }

    #[test]
    fn variables_are_strings_unless_the_setting_is_a_number_or_boolean() {
        for value in [
            "00012345",
            "12345678901234567890123",
            "1.50",
            "0x10",
            "1e3",
            "true",
        ] {
            let t = from(
                "",
                &[
                    ("KEYBOUND_SEC__NAME", value),
                    ("KEYBOUND_KEY", value),
                    ("KEYBOUND_KEYS__LENDER", value),
                ],
            )
            .unwrap();
            assert_eq!(t.sec.name.as_deref(), Some(value));
            assert_eq!(t.key.as_deref(), Some(value));
            assert_eq!(t.keys["lender"], value);
        }
        let t = from(
            "",
            &[("KEYBOUND_SEC__TTL", "030"), ("KEYBOUND_SEC__ON", "true")],
        )
        .unwrap();
        assert_eq!((t.sec.ttl, t.sec.on), (Some(30), true));
    }

    #[test]
    fn a_variable_that_does_not_parse_names_the_variable() {
        let e = from("", &[("KEYBOUND_SEC__TTL", "abc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"KEYBOUND_SEC__TTL: expected an integer, got "abc""#
        );
        for bad in ["yes", "1", "TRUE"] {
            let e = from("", &[("KEYBOUND_SEC__ON", bad)]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("KEYBOUND_SEC__ON: expected true or false, got {bad:?}")
            );
        }
    }

    #[test]
    fn variables_override_the_file_and_lists_split() {
        let t = from(
            "key = \"a\"\n[sec]\nttl = 5\nname = \"00\"\n",
            &[
                ("KEYBOUND_KEY", "b"),
                ("KEYBOUND_PKCS11_ALLOWED_MODULES", "/a.so:/b.so"),
                (
                    "KEYBOUND_SEC__ORIGINS",
                    "https://a.example,https://b.example",
                ),
                ("KEYBOUND_PKCS11_MODULE", ""),
            ],
        )
        .unwrap();
        assert_eq!(t.key.as_deref(), Some("b"));
        assert_eq!(t.sec.ttl, Some(5));
        assert_eq!(t.sec.name.as_deref(), Some("00"));
        assert_eq!(t.pkcs11_module, None);
        assert_eq!(
            t.pkcs11_allowed_modules,
            [PathBuf::from("/a.so"), PathBuf::from("/b.so")]
        );
        assert_eq!(t.sec.origins, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn the_file_is_typed_toml() {
        let e = from("[sec]\nname = 12345\n", &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("configuration file k.toml: `sec.name`: invalid type: integer"),
            "{e}"
        );
        let e = from("key = ", &[]).unwrap_err();
        assert!(e.to_string().contains("is not valid TOML"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_everywhere_with_the_closest_known_one() {
        let e = from("[sec]\ntll = 30\n", &[]).unwrap_err();
        assert_eq!(
            full(&e),
            "configuration file k.toml: unknown key `tll` in [sec] / did you mean `ttl`?"
        );
        let e = from("pkcs11_modul = \"/x.so\"\n", &[]).unwrap_err();
        assert_eq!(
            full(&e),
            "configuration file k.toml: unknown key `pkcs11_modul` at the top level / did you mean `pkcs11_module`?"
        );
        let e = from("", &[("KEYBOUND_SEC__NAEM", "x")]).unwrap_err();
        assert_eq!(
            full(&e),
            "KEYBOUND_SEC__NAEM: unknown key `naem` in [sec] / did you mean `name`?"
        );
        let e = from("", &[("KEYBOUND_SCE__NAME", "x")]).unwrap_err();
        assert_eq!(
            full(&e),
            "KEYBOUND_SCE__NAME: unknown key `sce` at the top level / did you mean `sec`?"
        );
        let e = from("", &[("KEYBOUND_PKCS11_MODUL", "/x.so")]).unwrap_err();
        assert_eq!(
            full(&e),
            "KEYBOUND_PKCS11_MODUL: unknown setting `pkcs11_modul` / did you mean `pkcs11_module` (KEYBOUND_PKCS11_MODULE)?"
        );
        let e = from("[sec]\nzzzzzzzz = 1\n", &[]).unwrap_err();
        assert_eq!(
            e.hint(),
            Some("known keys: `name`, `ttl`, `on`, `origins`"),
            "{e}"
        );
        // Variables that are not settings: the CLI's flags, keys for env:VAR, the tests' own.
        from(
            "",
            &[
                ("KEYBOUND_CONFIG", "x"),
                ("KEYBOUND_LOG_FORMAT", "json"),
                ("KEYBOUND_SIGNING_KEY_PEM", "x"),
                ("KEYBOUND_TEST_PKCS11_TOKEN", "x"),
            ],
        )
        .unwrap();
    }
}
