//! [`Secret`]: a config string that never shows up in logs, `Debug` output or `/status`.
//!
//! Any key can also be set from a file with `STRAIT_<KEY>_FILE` (see the env layer), which is how
//! secrets mounted by an orchestrator reach a `Secret` field.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `Debug`, `Display` and `Serialize` print instead of a non-empty secret.
const REDACTED: &str = "***";

/// A string that is redacted everywhere except [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (e.g. a SASL exchange).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() {
            ""
        } else {
            REDACTED
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

/// Serializes as `***` (or `""` when empty), so a serialized config can be shown safely. The
/// empty default still round-trips through figment's defaults layer.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

/// Takes a string only. Anything else fails without its value: serde's own type errors quote
/// the number or boolean they found, which for a secret would print it.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// The error for a secret given as something else than a string, naming only what it was.
fn not_a_string<E: de::Error>(found: &str) -> E {
    E::custom(format_args!(
        "found {found} where a secret must be a string (the value is not shown): quote it"
    ))
}

/// Visitor methods that refuse their value, naming only its kind.
macro_rules! reject {
    ($($method:ident($ty:ty) => $found:literal,)*) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<Secret, E> {
                Err(not_a_string($found))
            }
        )*
    };
}

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    reject! {
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_i128(i128) => "a number",
        visit_u64(u64) => "a number",
        visit_u128(u128) => "a number",
        visit_f64(f64) => "a number",
        visit_bytes(&[u8]) => "bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_everywhere_but_expose() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), r#""***""#);
        assert_eq!(s.to_string(), "***");
        assert_eq!(serde_json::to_string(&s).expect("serializes"), r#""***""#);
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), r#""""#);
    }

    #[test]
    fn deserializes_the_plain_value() {
        let s: Secret = serde_json::from_str(r#""hunter2""#).expect("a string");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn anything_but_a_string_fails_without_its_value() {
        for (json, found) in [
            ("73519", "a number"),
            ("-73519", "a number"),
            ("73519.5", "a number"),
            ("true", "a boolean"),
        ] {
            let err = serde_json::from_str::<Secret>(json)
                .expect_err("not a string")
                .to_string();
            assert!(err.contains(found) && err.contains("quote it"), "{err}");
            assert!(!err.contains(json.trim_start_matches('-')), "{json}: {err}");
        }
    }
}
