//! `strait check`: connects to both clusters with the full config (TCP, TLS, ApiVersions, SASL,
//! Metadata), then to every broker the metadata names (SASL runs on each of those connections
//! too), and lists the topics the config would replicate with what the target has for them.
//!
//! It reads only; it writes nothing to either cluster.

use std::fmt;

use kafka_protocol::messages::CreateTopicsRequest;

use super::topics;
use crate::config::{Config, TopicFilter};
use crate::kafka::{self, Cluster, ResponseError};

/// What `strait check` found on one cluster.
#[derive(Debug)]
pub struct ClusterCheck {
    /// `source` or `target`.
    pub name: &'static str,
    /// The bootstrap servers, as configured.
    pub bootstrap: String,
    /// `PLAINTEXT`, `SSL`, `SASL_SSL/SCRAM-SHA-512`, ...
    pub security: String,
    /// Brokers reached (authenticated, when SASL is set), as `host:port`.
    pub brokers: Vec<String>,
    /// The first failure, which names the broker, the step and the fix.
    pub error: Option<kafka::Error>,
}

/// One topic the config would replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCheck {
    /// Name on the source.
    pub source_topic: String,
    /// Name on the target.
    pub target_topic: String,
    /// Source partition count.
    pub partitions: i32,
    /// What the target has for it.
    pub target: TargetState,
}

/// The target side of a replicated topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// The target topic exists with this many partitions.
    Exists { partitions: i32 },
    /// Missing; strait will create it (the target serves CreateTopics).
    WillCreate,
    /// Missing, and the target does not serve CreateTopics.
    CannotCreate,
    /// The target refused to describe it (e.g. TOPIC_AUTHORIZATION_FAILED).
    Refused(ResponseError),
}

impl TopicCheck {
    /// Whether replication of this topic can start as things are.
    pub fn ok(&self) -> bool {
        match self.target {
            TargetState::Exists { partitions } => partitions >= self.partitions,
            TargetState::WillCreate => true,
            TargetState::CannotCreate | TargetState::Refused(_) => false,
        }
    }
}

/// Everything `strait check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// Source, then target.
    pub clusters: Vec<ClusterCheck>,
    /// Topics that would be replicated (empty when a cluster failed).
    pub topics: Vec<TopicCheck>,
    /// Why the topic list could not be read, when both clusters connected but listing failed.
    pub topics_error: Option<kafka::Error>,
}

impl CheckReport {
    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.clusters.iter().all(|c| c.error.is_none())
            && self.topics_error.is_none()
            && self.topics.iter().all(TopicCheck::ok)
    }

    /// 0 when everything passed; else the first cluster failure's code (69 unreachable or TLS
    /// refused, 77 authentication refused, 64 unusable TLS file), or 1 for topic problems.
    pub fn exit_code(&self) -> u8 {
        if let Some(e) = self.clusters.iter().find_map(|c| c.error.as_ref()) {
            return e.exit_code().unwrap_or(1);
        }
        u8::from(!self.passed())
    }
}

/// Runs every check; never fails as a whole, each failure is in the report.
pub async fn check(config: &Config, filter: &TopicFilter) -> CheckReport {
    let source = check_cluster("source", &config.source).await;
    let target = check_cluster("target", &config.target).await;
    let mut report = CheckReport {
        clusters: Vec::new(),
        topics: Vec::new(),
        topics_error: None,
    };
    if let ((s, Some(source)), (t, Some(target))) = (&source, &target) {
        if s.error.is_none() && t.error.is_none() {
            match list_topics(config, filter, source, target).await {
                Ok(topics) => report.topics = topics,
                Err(e) => report.topics_error = Some(e),
            }
        }
    }
    report.clusters = vec![source.0, target.0];
    report
}

async fn check_cluster(name: &'static str, config: &crate::config::ClusterConfig) -> (ClusterCheck, Option<Cluster>) {
    let mut check = ClusterCheck {
        name,
        bootstrap: config.bootstrap_servers.clone(),
        security: String::new(),
        brokers: Vec::new(),
        error: None,
    };
    let cluster = match Cluster::from_config(name, config) {
        Ok(c) => c,
        Err(e) => {
            check.error = Some(e);
            return (check, None);
        }
    };
    check.security = cluster.security_protocol();
    if let Err(e) = cluster.metadata(Some(&[])).await {
        check.error = Some(unwrap_bootstrap(e));
        return (check, None);
    }
    // Every broker gets its own connection, each with TLS and SASL, as replication will.
    for (node_id, addr) in cluster.known_brokers() {
        match cluster.broker(node_id).await {
            Ok(_) => check.brokers.push(addr),
            Err(e) => {
                check.error = Some(e);
                return (check, None);
            }
        }
    }
    (check, Some(cluster))
}

fn unwrap_bootstrap(err: kafka::Error) -> kafka::Error {
    match err {
        kafka::Error::Bootstrap { source, .. } if source.is_security_failure() => unwrap_bootstrap(*source),
        other => other,
    }
}

async fn list_topics(
    config: &Config,
    filter: &TopicFilter,
    source: &Cluster,
    target: &Cluster,
) -> kafka::Result<Vec<TopicCheck>> {
    let meta = source.metadata(None).await?;
    let own = [config.checkpoint.topic.as_str()];
    let chosen: Vec<(String, i32)> = meta
        .topics
        .iter()
        .filter(|(name, t)| {
            t.error.is_none() && topics::is_replicable(name, t.is_internal, &own) && filter.matches(name)
        })
        .map(|(name, t)| (name.clone(), t.partition_count()))
        .collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = chosen.iter().map(|(n, _)| filter.target_name(n)).collect();
    let on_target = target.metadata(Some(&names)).await?;
    let can_create = target.supports::<CreateTopicsRequest>().await?;
    Ok(chosen
        .into_iter()
        .zip(names)
        .map(|((source_topic, partitions), target_topic)| {
            let state = match on_target.topics.get(&target_topic) {
                Some(t) if t.error.is_none() => TargetState::Exists {
                    partitions: t.partition_count(),
                },
                Some(t) if t.error != Some(ResponseError::UnknownTopicOrPartition) => {
                    TargetState::Refused(t.error.unwrap_or(ResponseError::UnknownServerError))
                }
                _ if can_create => TargetState::WillCreate,
                _ => TargetState::CannotCreate,
            };
            TopicCheck {
                source_topic,
                target_topic,
                partitions,
                target: state,
            }
        })
        .collect())
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.clusters {
            match &c.error {
                None => writeln!(
                    f,
                    "ok    {} {} ({}): ApiVersions, authentication and Metadata passed on {} broker(s): {}",
                    c.name,
                    c.bootstrap,
                    c.security,
                    c.brokers.len(),
                    c.brokers.join(", ")
                )?,
                Some(e) => writeln!(f, "FAIL  {}: {}", c.name, super::error_chain(e))?,
            }
        }
        if let Some(e) = &self.topics_error {
            writeln!(f, "FAIL  topics: cannot list them: {}", super::error_chain(e))?;
        }
        if self.clusters.iter().any(|c| c.error.is_some()) {
            return writeln!(f, "topics not listed: fix the cluster failures above first");
        }
        writeln!(f, "topics to replicate: {}", self.topics.len())?;
        for t in &self.topics {
            let (mark, state) = match &t.target {
                TargetState::Exists { partitions } if *partitions >= t.partitions => {
                    ("ok  ", format!("exists with {partitions} partitions"))
                }
                TargetState::Exists { partitions } => (
                    "FAIL",
                    format!("exists with only {partitions} partitions: add partitions to the target topic"),
                ),
                TargetState::WillCreate => ("ok  ", format!("will be created with {} partitions", t.partitions)),
                TargetState::CannotCreate => (
                    "FAIL",
                    format!(
                        "missing and the target cannot create topics: create it with {} partitions",
                        t.partitions
                    ),
                ),
                TargetState::Refused(code) => (
                    "FAIL",
                    format!("the target refused to describe it ({code:?}): grant strait Describe and Write on it"),
                ),
            };
            writeln!(
                f,
                "{mark}  {} -> {} ({} partitions): {state}",
                t.source_topic, t.target_topic, t.partitions
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(target: TargetState) -> TopicCheck {
        TopicCheck {
            source_topic: "spans".into(),
            target_topic: "dr.spans".into(),
            partitions: 4,
            target,
        }
    }

    #[test]
    fn topic_states_pass_or_fail() {
        assert!(topic(TargetState::Exists { partitions: 4 }).ok());
        assert!(!topic(TargetState::Exists { partitions: 2 }).ok());
        assert!(topic(TargetState::WillCreate).ok());
        assert!(!topic(TargetState::CannotCreate).ok());
        assert!(!topic(TargetState::Refused(ResponseError::TopicAuthorizationFailed)).ok());
    }

    #[test]
    fn exit_code_follows_the_first_failure() {
        let ok = |name| ClusterCheck {
            name,
            bootstrap: "b:9092".into(),
            security: "PLAINTEXT".into(),
            brokers: vec!["b:9092".into()],
            error: None,
        };
        let mut report = CheckReport {
            clusters: vec![ok("source"), ok("target")],
            topics: vec![topic(TargetState::WillCreate)],
            topics_error: None,
        };
        assert_eq!(report.exit_code(), 0);
        report.topics.push(topic(TargetState::CannotCreate));
        assert_eq!(report.exit_code(), 1);
        report.clusters[1].error = Some(kafka::Error::Auth {
            cluster: "target".into(),
            broker: "b:9092".into(),
            mechanism: "SCRAM-SHA-512",
            reason: "refused".into(),
            fix: "check target.sasl.username".into(),
            code: Some(ResponseError::SaslAuthenticationFailed),
        });
        assert_eq!(report.exit_code(), 77);
        let text = report.to_string();
        assert!(
            text.contains("FAIL  target: target cluster, broker b:9092: SASL SCRAM-SHA-512"),
            "{text}"
        );
    }
}
