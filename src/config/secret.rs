//! [`Secret`]: a config string that never shows up in logs, `Debug` output or `/status`.
//!
//! Any key can also be set from a file with `STRAIT_<KEY>_FILE` (see the env layer), which is how
//! secrets mounted by an orchestrator reach a `Secret` field.

use std::fmt;

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

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
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
}
