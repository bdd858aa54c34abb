//! `budget.weights`: rules that give topic classes their share of the WAN budget, parsed once
//! as the config is read.

use regex::Regex;

/// Errors of a `budget.weights` rule.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A weight rule is not `regex=weight`.
    #[error("budget.weights entry {entry:?} is not REGEX=WEIGHT with a positive weight, e.g. \"jaeger-.*=3\"")]
    Rule { entry: String },
    /// A weight rule's regex does not compile.
    #[error("budget.weights entry {entry:?} has an invalid regex")]
    Regex {
        entry: String,
        #[source]
        source: regex::Error,
    },
}

/// A parsed weight rule: topics fully matching `regex` share `weight`. In the config it is the
/// `REGEX=WEIGHT` text it was parsed from (`budget.weights`), checked as it is read.
#[derive(Clone, Debug)]
pub struct WeightRule {
    entry: String,
    regex: Regex,
    weight: f64,
}

super::rule_text::rule_text!(WeightRule);

impl WeightRule {
    /// What is wrong with `entry` and how to write a rule, on one line.
    fn explain(entry: &str, error: WeightError) -> String {
        let fix = "write rules as REGEX=WEIGHT with a positive weight, e.g. \"jaeger-.*=3\"";
        match error {
            WeightError::Rule { .. } => format!("{entry:?} is not a valid rule: {fix}"),
            WeightError::Regex { source, .. } => {
                format!(
                    "{entry:?} is not a valid rule ({}): {fix}",
                    super::rule_text::one_line(&source)
                )
            }
        }
    }

    /// Whether `topic` falls under this rule.
    pub fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }

    /// The rule's weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The topics it matches, as written (without the weight).
    pub fn pattern(&self) -> &str {
        self.entry
            .rsplit_once('=')
            .map_or(self.entry.as_str(), |(p, _)| p.trim())
    }

    /// Parses `REGEX=WEIGHT`.
    pub fn parse(entry: &str) -> Result<Self, WeightError> {
        let (pattern, weight) = entry.rsplit_once('=').ok_or_else(|| WeightError::Rule {
            entry: entry.to_owned(),
        })?;
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w > 0.0)
            .ok_or_else(|| WeightError::Rule {
                entry: entry.to_owned(),
            })?;
        let regex = Regex::new(&format!("^(?:{})$", pattern.trim())).map_err(|source| WeightError::Regex {
            entry: entry.to_owned(),
            source,
        })?;
        Ok(Self {
            entry: entry.to_owned(),
            regex,
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_rules_are_checked() {
        assert!(WeightRule::parse("spans=2").is_ok());
        assert!(WeightRule::parse("spans").is_err());
        assert!(WeightRule::parse("spans=0").is_err());
        assert!(WeightRule::parse("spans=-1").is_err());
        assert!(matches!(WeightRule::parse("spans(=1"), Err(WeightError::Regex { .. })));
    }

    #[test]
    fn a_rule_reads_and_writes_as_its_text() {
        let rule: WeightRule = serde_json::from_str("\"jaeger-.*=3\"").expect("rule");
        assert_eq!(rule.weight, 3.0);
        assert!(rule.regex.is_match("jaeger-spans"));
        assert_eq!(serde_json::to_string(&rule).expect("text"), "\"jaeger-.*=3\"");
        let bad = serde_json::from_str::<WeightRule>("\"spans\"").expect_err("no weight");
        assert!(bad.to_string().contains("write rules as REGEX=WEIGHT"), "{bad}");
    }
}
