//! One Kafka cluster as strait sees it: bootstrap servers, a metadata cache, leader routing and
//! shared connections per broker: lanes that partitions are spread over, the first also carrying
//! everything that is not a partition's fetch or produce.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::conn::Conn;
use super::error::{Error, Result};
use super::pace::Pace;
use super::security::Security;
use super::TopicPartition;

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

/// One connection slot: its connection once open, and when it may connect again after a failure.
#[derive(Debug, Default)]
struct SlotState {
    conn: Option<Arc<Conn>>,
    gate: super::backoff::ReconnectGate,
}

/// A cluster: where its brokers are, who leads which partition, and the connections to them.
pub struct Cluster {
    name: String,
    bootstrap: Vec<String>,
    client_id: String,
    timeout: Duration,
    security: Security,
    pace: Option<Arc<dyn Pace>>,
    /// Connections per broker that partitions' fetches and produce requests are spread over.
    lanes: u16,
    /// A topic whose partitions have a connection of their own to each broker.
    own_lane: Option<String>,
    /// Fetches share one request per broker; started on first use.
    pub(super) fetches: std::sync::OnceLock<super::fetches::Fetches>,
    /// So do ListOffsets; started on first use.
    pub(super) lists: std::sync::OnceLock<super::lists::Lists>,
    /// Produce requests shared by the partitions of a connection, started on first use.
    pub(super) produces: std::sync::OnceLock<super::produces::Produces>,
    state: Mutex<State>,
    /// Woken when a connection opens after its slot failed to connect: the cluster is reachable
    /// again, so whoever waits out a retry delay may try now.
    reconnected: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    brokers: HashMap<i32, String>,
    /// Connections by broker address and lane (lane 0 also carries what is not a partition's
    /// fetch or produce).
    slots: HashMap<(String, u16), Slot>,
    /// Per broker address: woken when a connection to it opens after failed attempts, so its
    /// other slots' attempts still waiting on the path start again at once.
    back: HashMap<String, Arc<tokio::sync::Notify>>,
    leaders: HashMap<TopicPartition, i32>,
    /// Topics a metadata answer named without an error: only those can be found deleted.
    named: HashSet<String>,
    /// Leader refreshes by topic ([`Refresh`]), and how many have ended.
    refreshes: HashMap<String, (Arc<tokio::sync::Mutex<Refresh>>, u64)>,
}

/// The last leader refresh of one topic. One runs at a time per topic, and a lookup that missed
/// the cache before a refresh ended takes its answer instead of asking again: when a cut ends,
/// thousands of partitions whose cached leaders were dropped want them back at once, and a
/// Metadata answer for a topic of 5,000 partitions is over 100 kB, so one request each would
/// send the link hundreds of megabytes of the same answer.
#[derive(Debug, Default)]
struct Refresh {
    /// The topic's error in the last answer, or why the request failed; `None` before the first.
    last: Option<Result<Option<ResponseError>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("bootstrap", &self.bootstrap)
            .field("security", &self.security.describe())
            .finish_non_exhaustive()
    }
}

/// The topics of a cluster and the leaders of their partitions.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker reports one.
    pub cluster_id: Option<String>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
}

/// One topic in a metadata answer.
#[derive(Clone, Debug, Default)]
pub struct TopicMetadata {
    /// Topic-level error, e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub error: Option<ResponseError>,
    /// Whether the broker marks the topic internal.
    pub is_internal: bool,
    /// Leader node id per partition (-1 when leaderless).
    pub leaders: BTreeMap<i32, i32>,
    /// The topic id (a recreated topic has a new one); `None` when the broker gives none.
    pub id: Option<[u8; 16]>,
}

impl TopicMetadata {
    /// Number of partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.leaders.len() as i32
    }
}

impl Cluster {
    /// A cluster reached through `bootstrap` servers; no socket is opened until first use.
    /// Plaintext, no authentication.
    pub fn new(name: &str, bootstrap: Vec<String>, client_id: &str, timeout: Duration) -> Self {
        Self::with_security(name, bootstrap, client_id, timeout, Security::plaintext())
    }

    /// A cluster whose every connection, to bootstrap servers and to brokers found later in
    /// metadata alike, is set up with `security` (TLS handshake, then SASL).
    pub fn with_security(
        name: &str,
        bootstrap: Vec<String>,
        client_id: &str,
        timeout: Duration,
        security: Security,
    ) -> Self {
        Self {
            name: name.to_owned(),
            bootstrap,
            client_id: client_id.to_owned(),
            timeout,
            security,
            pace: None,
            lanes: 1,
            own_lane: None,
            fetches: std::sync::OnceLock::new(),
            lists: std::sync::OnceLock::new(),
            produces: std::sync::OnceLock::new(),
            state: Mutex::new(State::default()),
            reconnected: tokio::sync::Notify::new(),
        }
    }

    /// The cluster described by one `[source]` or `[target]` section, `name` being the section.
    /// Reads its TLS files now; opens no socket.
    pub fn from_config(name: &str, config: &crate::config::ClusterConfig) -> Result<Self> {
        Ok(Self::with_security(
            name,
            config.bootstrap(),
            &config.client_id,
            config.request_timeout(),
            Security::from_config(name, config)?,
        )
        .with_lanes(config.connections_per_broker))
    }

    /// Every connection opened from now on writes at the rate `pace` allows.
    pub fn with_pace(mut self, pace: Arc<dyn Pace>) -> Self {
        self.pace = Some(pace);
        self
    }

    /// Partitions fetch and produce over `lanes` connections per broker (at least 1), a
    /// partition always over the same one so its requests stay in order. A Kafka broker handles
    /// the requests of one connection one at a time; more connections let it serve several
    /// partitions at once.
    pub fn with_lanes(mut self, lanes: u16) -> Self {
        self.lanes = lanes.max(1);
        self
    }

    /// The partitions of `topic` fetch and produce over a connection of their own to each
    /// broker, past the lanes and the quiet connection: the checkpoint topic, whose small writes
    /// must not wait behind megabytes of data (a broker answers a connection's requests in
    /// order, and the bytes of one connection leave in order).
    pub fn with_own_lane(mut self, topic: &str) -> Self {
        self.own_lane = Some(topic.to_owned());
        self
    }

    /// Connections per broker that partitions are spread over.
    pub(super) fn lanes(&self) -> u16 {
        self.lanes
    }

    /// The lane of `tp`: partitions of a topic take the lanes in turn.
    fn lane(&self, tp: &TopicPartition) -> u16 {
        use std::hash::{Hash, Hasher};
        if self.own_lane.as_deref() == Some(tp.topic.as_str()) {
            return self.lanes.saturating_add(1);
        }
        if self.lanes <= 1 {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tp.topic.hash(&mut h);
        let spread = h.finish().wrapping_add(tp.partition.unsigned_abs().into());
        (spread % u64::from(self.lanes)) as u16
    }

    /// The brokers named by the last metadata answer: `(node id, host:port)`, by node id.
    pub fn known_brokers(&self) -> Vec<(i32, String)> {
        let mut brokers: Vec<(i32, String)> = self.state().brokers.iter().map(|(id, a)| (*id, a.clone())).collect();
        brokers.sort();
        brokers
    }

    /// The bootstrap servers, as configured.
    pub fn bootstrap_servers(&self) -> &[String] {
        &self.bootstrap
    }

    /// How connections are protected, in Kafka's names (`SASL_SSL/SCRAM-SHA-512`).
    pub fn security_protocol(&self) -> String {
        self.security.describe()
    }

    /// The name given to this cluster in logs and errors ("source", "target").
    pub fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The connection to `addr`, opened (or reopened after a failure) on demand.
    pub async fn conn_to(&self, addr: &str) -> Result<Arc<Conn>> {
        self.lane_to(addr, 0).await
    }

    /// Connection `lane` to `addr`, opened (or reopened after a failure) on demand.
    async fn lane_to(&self, addr: &str, lane: u16) -> Result<Arc<Conn>> {
        let (slot, back) = {
            let mut state = self.state();
            let slot = Arc::clone(state.slots.entry((addr.to_owned(), lane)).or_default());
            (slot, Arc::clone(state.back.entry(addr.to_owned()).or_default()))
        };
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.conn.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        // Right after a failed connect every caller gets that failure back, without an attempt.
        if let Some(e) = guard.gate.blocked(tokio::time::Instant::now()) {
            return Err(e);
        }
        // Boxed: connecting (TLS, SASL) is rare, and its future would otherwise be part of every
        // request's future, held by every partition task for its life.
        let mut started = tokio::time::Instant::now();
        let connect = || {
            metrics::counter!(crate::telemetry::CONNECTION_ATTEMPTS, "cluster" => self.name.clone()).increment(1);
            Box::pin(Conn::connect_with(
                addr,
                &self.client_id,
                self.timeout,
                &self.security,
                self.pace.clone(),
            ))
        };
        let came_back = back.notified();
        let again = || {
            tracing::debug!(cluster = %self.name, broker = addr, lane,
                "another connection to the broker opened: connecting again at once");
            started = tokio::time::Instant::now();
            connect()
        };
        let conn = match Box::pin(attempt_or_again(connect(), came_back, again)).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                guard.gate.failed(started, tokio::time::Instant::now(), e.clone());
                return Err(e);
            }
        };
        if guard.gate.connected() {
            tracing::info!(cluster = %self.name, broker = addr, lane, "connected again after failed attempts: retries waiting on this cluster go now");
            back.notify_waiters();
            self.reopen_gates(addr, lane);
            self.reconnected.notify_waiters();
        } else {
            tracing::debug!(cluster = %self.name, broker = addr, lane, "connected");
        }
        guard.conn = Some(Arc::clone(&conn));
        // Open connections of this cluster; a slot locked by another caller counts as open.
        let open = self
            .state()
            .slots
            .values()
            .filter(|s| {
                s.try_lock()
                    .map_or(true, |g| g.conn.as_ref().is_some_and(|c| !c.is_closed()))
            })
            .count();
        metrics::gauge!(crate::telemetry::CONNECTIONS, "cluster" => self.name.clone()).set(open as f64);
        Ok(conn)
    }

    /// The other slots of `addr` idle behind a failed connect may connect at once: one
    /// connection to the broker just opened. (A slot connecting now is woken by the broker's
    /// notify instead.)
    fn reopen_gates(&self, addr: &str, lane: u16) {
        let state = self.state();
        for ((a, l), slot) in &state.slots {
            if a == addr && *l != lane {
                if let Ok(mut other) = slot.try_lock() {
                    other.gate.reopen();
                }
            }
        }
    }

    /// Whether a metadata answer of this cluster named `topic` without an error (it existed
    /// once, as far as this client saw).
    pub fn has_named(&self, topic: &str) -> bool {
        self.state().named.contains(topic)
    }

    /// Woken (every waiter at once) when a connection opens after failed attempts to connect:
    /// a retry delay can end early then, without an attempt per waiter while the cluster is
    /// unreachable (the connection gate keeps those bounded).
    pub fn reconnected(&self) -> &tokio::sync::Notify {
        &self.reconnected
    }

    /// The connection to broker `node_id`, as named by metadata.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Conn>> {
        self.broker_lane(node_id, 0).await
    }

    /// Connection `lane` to broker `node_id`.
    async fn broker_lane(&self, node_id: i32, lane: u16) -> Result<Arc<Conn>> {
        let addr = self.state().brokers.get(&node_id).cloned();
        match addr {
            Some(addr) => self.lane_to(&addr, lane).await,
            None => Err(Error::UnknownBroker { node_id }),
        }
    }

    /// Any working connection: known brokers first, then the bootstrap list.
    pub async fn any_conn(&self) -> Result<Arc<Conn>> {
        let mut candidates: Vec<String> = self.state().brokers.values().cloned().collect();
        candidates.sort();
        candidates.extend(self.bootstrap.iter().cloned());
        let mut last = None;
        for addr in candidates {
            match self.conn_to(&addr).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Bootstrap {
            cluster: self.name.clone(),
            servers: self.bootstrap.join(","),
            source: Box::new(last.unwrap_or(Error::NoLeader {
                topic: String::new(),
                partition: -1,
            })),
        })
    }

    /// Fetches metadata for `topics` (all topics when `None`) and refreshes the caches.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }));
        let conn = self.any_conn().await?;
        let (response, _) = conn.send(&request).await?;
        let mut meta = ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            topics: BTreeMap::new(),
        };
        let mut state = self.state();
        for b in &response.brokers {
            state
                .brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code.err().is_none() && !state.named.contains(&name) {
                state.named.insert(name.clone());
            }
            let mut topic = TopicMetadata {
                error: t.error_code.err(),
                is_internal: t.is_internal,
                leaders: BTreeMap::new(),
                id: (!t.topic_id.is_nil()).then(|| *t.topic_id.as_bytes()),
            };
            for p in t.partitions {
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                if p.leader_id.0 >= 0 {
                    state.leaders.insert(tp, p.leader_id.0);
                } else {
                    state.leaders.remove(&tp);
                }
                topic.leaders.insert(p.partition_index, p.leader_id.0);
            }
            meta.topics.insert(name, topic);
        }
        Ok(meta)
    }

    /// The connection to the current leader of `tp`, refreshing metadata when it is unknown.
    pub async fn leader(&self, tp: &TopicPartition) -> Result<Arc<Conn>> {
        let node_id = self.leader_id(tp).await?;
        self.broker(node_id).await
    }

    /// The connection `tp` fetches and produces over: its lane to the current leader.
    pub(super) async fn lane_conn(&self, tp: &TopicPartition) -> Result<Arc<Conn>> {
        let node_id = self.leader_id(tp).await?;
        self.broker_lane(node_id, self.lane(tp)).await
    }

    /// The connection `tp` sleeps on while idle (fetches that wait until readable): one more per
    /// broker, past the lanes, so the idle partitions' long polls never hold up a lane's busy
    /// ones (a broker answers one request of a connection at a time).
    pub(super) async fn quiet_conn(&self, tp: &TopicPartition) -> Result<Arc<Conn>> {
        let node_id = self.leader_id(tp).await?;
        self.broker_lane(node_id, self.lanes).await
    }

    /// The node id of the current leader of `tp`, refreshing metadata when it is unknown (one
    /// refresh per topic for every lookup that missed meanwhile: [`Refresh`]).
    pub(super) async fn leader_id(&self, tp: &TopicPartition) -> Result<i32> {
        let (refresh, seen) = {
            let mut state = self.state();
            if let Some(&id) = state.leaders.get(tp) {
                return Ok(id);
            }
            let (refresh, ended) = state.refreshes.entry(tp.topic.clone()).or_default();
            (Arc::clone(refresh), *ended)
        };
        let mut refresh = refresh.lock().await;
        let ended = self.state().refreshes.get(&tp.topic).map_or(0, |(_, ended)| *ended);
        if ended == seen || refresh.last.is_none() {
            // Boxed, as connecting is: a cache miss is rare.
            let answer = Box::pin(self.metadata(Some(std::slice::from_ref(&tp.topic))))
                .await
                .map(|meta| meta.topics.get(&tp.topic).and_then(|t| t.error));
            if let Some((_, ended)) = self.state().refreshes.get_mut(&tp.topic) {
                *ended += 1;
            }
            refresh.last = Some(answer);
        }
        match &refresh.last {
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(Some(code))) => {
                return Err(Error::Partition {
                    api: kafka_protocol::messages::ApiKey::Metadata,
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code: *code,
                    message: None,
                })
            }
            _ => {}
        }
        match self.state().leaders.get(tp).copied() {
            Some(id) if id >= 0 => Ok(id),
            _ => Err(Error::NoLeader {
                topic: tp.topic.clone(),
                partition: tp.partition,
            }),
        }
    }

    /// Forgets the cached leader of `tp`, so the next call asks the cluster again.
    pub fn invalidate(&self, tp: &TopicPartition) {
        self.state().leaders.remove(tp);
    }
}

/// Runs a connect `attempt`; when `came_back` fires first (another connection to the broker
/// opened after failed attempts: the path is back), drops it for the one `again` starts. On a
/// black-holed path an attempt's SYN was lost and its retransmission may be a second away; a
/// new attempt's first SYN goes now.
async fn attempt_or_again<T, A, B>(
    attempt: A,
    came_back: tokio::sync::futures::Notified<'_>,
    again: impl FnOnce() -> B,
) -> T
where
    A: std::future::Future<Output = T>,
    B: std::future::Future<Output = T>,
{
    tokio::pin!(came_back);
    // Registered before the attempt starts: a connection opening meanwhile is not missed.
    came_back.as_mut().enable();
    tokio::pin!(attempt);
    tokio::select! {
        biased;
        out = &mut attempt => out,
        () = came_back => again().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse};
    use kafka_protocol::protocol::HeaderVersion;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::super::test_broker::{answer, api_versions, read_request};

    #[tokio::test(start_paused = true)]
    async fn an_attempt_waiting_on_the_path_starts_again_when_the_broker_is_back() {
        let back = tokio::sync::Notify::new();
        let start = tokio::time::Instant::now();
        // The first attempt's SYN was lost: it hangs. Another slot of the broker connects
        // 100 ms in. The answer says which attempt gave it: 7 is the one started again.
        let (out, ()) = tokio::join!(
            attempt_or_again(std::future::pending::<u32>(), back.notified(), || async { 7 }),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                back.notify_waiters();
            }
        );
        assert_eq!(out, 7, "started again");
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        // An attempt that ends first is kept, and a notify from before the attempt is not
        // taken for the broker's return.
        back.notify_waiters();
        let out = attempt_or_again(
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                3
            },
            back.notified(),
            || async { unreachable!("not started again") },
        )
        .await;
        assert_eq!(out, 3, "the first attempt's answer, not started again");
    }

    /// A broker (node 1) whose Metadata answers say it leads `partitions` partitions of topic
    /// "spans", or that it does not know the topic when `unknown(n)` says so of the nth request
    /// (from 0); `asked` counts the Metadata requests.
    async fn metadata_broker(partitions: i32, asked: Arc<AtomicUsize>, unknown: fn(usize) -> bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let asked = Arc::clone(&asked);
                tokio::spawn(async move {
                    while let Some((api, version, header, _)) = read_request(&mut s).await {
                        let id = header.correlation_id;
                        if api == ApiKey::ApiVersions {
                            api_versions(&mut s, id, version, &[(ApiKey::Metadata, 0, 12)]).await;
                            continue;
                        }
                        assert_eq!(api, ApiKey::Metadata);
                        let n = asked.fetch_add(1, Ordering::SeqCst);
                        let topic = |name: &str| {
                            let parts = (0..partitions).map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_id(BrokerId(1))
                            });
                            let topic = MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))));
                            match unknown(n) {
                                true => topic.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                                false => topic.with_partitions(parts.collect()),
                            }
                        };
                        let body = MetadataResponse::default()
                            .with_brokers(vec![MetadataResponseBroker::default()
                                .with_node_id(BrokerId(1))
                                .with_host(StrBytes::from_string(addr.ip().to_string()))
                                .with_port(i32::from(addr.port()))])
                            .with_topics(vec![topic("spans")]);
                        let out = answer(id, &body, version, MetadataResponse::header_version(version));
                        s.write_all(&out).await.expect("write");
                    }
                });
            }
        });
        addr.to_string()
    }

    #[tokio::test]
    async fn a_topic_the_cluster_never_named_is_unseen_not_deleted() {
        use crate::pipeline::wire::{Fetch, TopicState};
        let asked = Arc::new(AtomicUsize::new(0));
        // Unknown to the first two answers (just created), named by the third, then deleted.
        let addr = metadata_broker(1, Arc::clone(&asked), |n| n != 2).await;
        let cluster = Cluster::new("target", vec![addr], "strait", Duration::from_secs(5));
        assert_eq!(cluster.topic_state("spans").await.expect("answer"), TopicState::Unseen);
        assert_eq!(cluster.topic_state("spans").await.expect("answer"), TopicState::Unseen);
        assert!(!cluster.has_named("spans"));
        assert!(matches!(cluster.topic_state("spans").await, Ok(TopicState::Present(_))));
        assert!(cluster.has_named("spans"));
        assert_eq!(cluster.topic_state("spans").await.expect("answer"), TopicState::Missing);
        assert_eq!(asked.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn lookups_that_miss_together_share_one_metadata_request_and_a_later_miss_asks_again() {
        let asked = Arc::new(AtomicUsize::new(0));
        let addr = metadata_broker(50, Arc::clone(&asked), |_| false).await;
        let cluster = Cluster::new("target", vec![addr], "strait", Duration::from_secs(5));
        let tps: Vec<TopicPartition> = (0..50).map(|p| TopicPartition::new("spans", p)).collect();
        // Every partition's leader unknown at once, as after a cut dropped them all.
        let leaders = futures_util::future::join_all(tps.iter().map(|tp| cluster.leader_id(tp))).await;
        assert!(leaders.iter().all(|l| matches!(l, Ok(1))), "{leaders:?}");
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one request for 50 lookups");
        // Cached: no request.
        assert!(matches!(cluster.leader_id(&tps[7]).await, Ok(1)));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // A leader dropped after that refresh is asked again.
        cluster.invalidate(&tps[7]);
        assert!(matches!(cluster.leader_id(&tps[7]).await, Ok(1)));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    fn lanes(n: u16) -> Cluster {
        Cluster::new("target", vec!["127.0.0.1:1".into()], "strait", Duration::from_secs(1)).with_lanes(n)
    }

    #[test]
    fn partitions_take_the_lanes_in_turn_and_keep_theirs() {
        let c = lanes(2);
        let of = |p: i32| c.lane(&TopicPartition::new("spans", p));
        let first: Vec<u16> = (0..8).map(of).collect();
        // Neighbouring partitions alternate, so each lane carries half of them.
        assert!(first.windows(2).all(|w| w[0] != w[1]), "{first:?}");
        assert_eq!(first.iter().filter(|l| **l == 0).count(), 4);
        // A partition's lane never changes, so its batches stay on one connection, in order.
        assert_eq!((0..8).map(of).collect::<Vec<_>>(), first);
        assert!((0..1000).all(|p| of(p) < 2));
    }

    #[test]
    fn the_checkpoint_topic_has_a_lane_of_its_own() {
        for n in [1, 4] {
            let c = lanes(n).with_own_lane("strait.checkpoints");
            let own = c.lane(&TopicPartition::new("strait.checkpoints", 0));
            // Past the data lanes and the quiet connection (lane `n`).
            assert!(own > n, "{own} with {n} lanes");
            assert!((0..100).all(|p| c.lane(&TopicPartition::new("spans", p)) < n));
        }
    }

    #[test]
    fn one_lane_is_the_shared_connection() {
        for n in [0, 1] {
            let c = lanes(n);
            assert!((0..100).all(|p| c.lane(&TopicPartition::new("spans", p)) == 0));
        }
    }
}
