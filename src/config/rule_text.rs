//! What the rule lists of the config (`budget.weights`, `topics.target_configs`) share: a rule
//! is the text it was parsed from, checked as it is read.

/// Implements, for a rule type with an `entry: String` field (its text), a `parse(&str)`
/// constructor and an `explain(entry, error) -> String` that says what is wrong and how to
/// write it: equality (two rules are the same when written the same), `Display` and
/// `Serialize` as the text, and `Deserialize` through `parse`, failing with `explain`.
macro_rules! rule_text {
    ($rule:ty) => {
        impl PartialEq for $rule {
            fn eq(&self, other: &Self) -> bool {
                self.entry == other.entry
            }
        }

        impl Eq for $rule {}

        impl std::fmt::Display for $rule {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.entry)
            }
        }

        impl serde::Serialize for $rule {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.entry)
            }
        }

        impl<'de> serde::Deserialize<'de> for $rule {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let entry = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&entry).map_err(|e| serde::de::Error::custom(Self::explain(&entry, e)))
            }
        }
    };
}

pub(super) use rule_text;

/// The regex crate's message on one line: it spans lines, and a config error is one line.
pub(super) fn one_line(error: &regex::Error) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
