//! Scenario 5: node loss. The outage scenario's chain of three, run on a
//! three-node cluster — NATS (core and JetStream with three replicas) and
//! Apache Kafka (replication 3, `min.insync.replicas=2`) — with one node
//! SIGKILLed mid-run and started again: the errors callers saw, the work
//! lost, and how long until callers were served again.
//!
//! The clusters are the ones the cluster tests start (`tests/support/clusters.rs`),
//! on free loopback ports with their own data directories, killed when dropped.

use std::time::{Duration, Instant};

use switchboard::{Bus, Style};

use crate::backends::Backend;
use crate::chain;
use crate::outage::{self, Disruption, OutageRow};
use crate::support::clusters::{KafkaCluster, NatsCluster};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a fresh cluster may take to elect its leaders.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// The clusters this run could start, and why the others did not run.
#[derive(Default)]
pub struct Clusters {
    nats: Option<NatsCluster>,
    kafka: Option<KafkaCluster>,
    /// Per cluster that did not start outside CI: why.
    pub skipped: Vec<String>,
}

impl Clusters {
    /// Starts a NATS cluster when `nats` and a Kafka cluster when `kafka`.
    /// A missing server is an error under CI and a skip (with its reason) otherwise.
    pub fn start(nats: bool, kafka: bool) -> Result<Clusters, BoxError> {
        let mut clusters = Clusters::default();
        if nats {
            clusters.nats = started("NATS", &mut clusters.skipped, NatsCluster::start)?;
        }
        if kafka {
            clusters.kafka = started("Kafka", &mut clusters.skipped, KafkaCluster::start)?;
        }
        Ok(clusters)
    }

    /// The backends on the started clusters, each with the node it kills.
    pub fn backends(&self, run_id: &str) -> Vec<ClusterBackend> {
        let mut all = Vec::new();
        if let Some(cluster) = &self.nats {
            // Every client starts on server 0, the one that dies: it must move
            // to the servers it learned from the cluster.
            let core = cluster.first_only("");
            all.push(ClusterBackend {
                backend: Backend::custom("nats-cluster", core, run_id.to_owned(), ALL_STYLES),
                node: Node::NatsFirst,
            });
            let durable = format!("{run_id}r3");
            let url = cluster.first_only(&format!(
                "&jetstream={}&jetstream_subjects={durable}.*.*&jetstream_replicas=3\
                 &publish_timeout=2s&ack_wait=2s",
                durable.to_uppercase()
            ));
            all.push(ClusterBackend {
                backend: Backend::custom("nats-js-cluster", url, durable, &[Style::Async]),
                node: Node::NatsFirst,
            });
        }
        if let Some(cluster) = &self.kafka {
            let url = cluster.url("&fetch_wait=1ms");
            all.push(ClusterBackend {
                backend: Backend::custom("kafka-cluster", url, run_id.to_owned(), ALL_STYLES),
                node: Node::KafkaEntryLeader,
            });
        }
        all
    }

    /// Kills (`up == false`) or restarts (`up == true`) `node` of its cluster;
    /// `entry` is the chain's first subject (whose Kafka partition leader dies).
    fn set(&mut self, node: Node, entry: &str, killed: &mut Option<usize>, up: bool) {
        match (node, up) {
            (Node::NatsFirst, false) => self.nats.as_mut().map(|c| c.nodes[0].stop()),
            (Node::NatsFirst, true) => self.nats.as_mut().map(|c| c.nodes[0].restart()),
            (Node::KafkaEntryLeader, false) => self.kafka.as_mut().map(|cluster| {
                let leader = kafka_leader(cluster, entry);
                cluster.brokers[leader].stop();
                *killed = Some(leader);
            }),
            (Node::KafkaEntryLeader, true) => self.kafka.as_mut().map(|cluster| {
                if let Some(leader) = killed.take() {
                    cluster.brokers[leader].restart();
                }
            }),
        };
    }
}

const ALL_STYLES: &[Style] = &[Style::Sync, Style::Async];

/// Which node of its cluster a backend loses.
#[derive(Debug, Clone, Copy)]
pub enum Node {
    /// NATS server 0, where every client of the scenario is connected.
    NatsFirst,
    /// The Kafka broker leading the chain's entry topic.
    KafkaEntryLeader,
}

/// A backend on a cluster, and the node it loses.
pub struct ClusterBackend {
    pub backend: Backend,
    pub node: Node,
}

#[cfg(feature = "kafka")]
fn kafka_leader(cluster: &KafkaCluster, topic: &str) -> usize {
    cluster.leader_of(topic)
}

#[cfg(not(feature = "kafka"))]
fn kafka_leader(_: &KafkaCluster, _: &str) -> usize {
    0
}

/// Runs `start` (a cluster's constructor from the test support), turning its
/// "ignored, because …" into a skip with that reason and any other failure
/// into an error.
fn started<T>(
    name: &str,
    skipped: &mut Vec<String>,
    start: fn() -> Option<T>,
) -> Result<Option<T>, BoxError> {
    match std::panic::catch_unwind(start) {
        Ok(cluster) => Ok(cluster),
        Err(payload) => match payload.downcast::<crate::support::Skip>() {
            Ok(skip) => {
                skipped.push(format!("{name} cluster: {}", skip.0));
                Ok(None)
            }
            Err(payload) => {
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "it panicked".into());
                Err(format!("the {name} cluster did not start: {why}").into())
            }
        },
    }
}

/// Connects the runner's bus to a fresh cluster, retrying while it elects its leaders.
pub async fn seed(backend: &Backend, style: Style) -> Result<Bus, BoxError> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match backend.seed(style).await {
            Ok(bus) => return Ok(bus),
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(backend = backend.name, %err, "cluster not ready yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(format!("{}: never ready: {err}", backend.name).into()),
        }
    }
}

/// The outage measurement on `on`, losing its node for `down`.
pub async fn measure(
    clusters: &mut Clusters,
    on: &ClusterBackend,
    seed: &Bus,
    prefix: &str,
    style: Style,
    down: Duration,
) -> Result<OutageRow, BoxError> {
    let entry = chain::stage(prefix, 1);
    let mut killed = None;
    let mut node = |up: bool| clusters.set(on.node, &entry, &mut killed, up);
    outage::measure(
        &on.backend,
        seed,
        prefix,
        style,
        down,
        Disruption::Node(&mut node),
    )
    .await
}
