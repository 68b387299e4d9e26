//! Three-node clusters of NATS and Apache Kafka on loopback, for the
//! node-loss tests and the scenario runner's node-loss scenario.

use std::process::Command;
#[cfg(feature = "kafka")]
use std::time::Duration;

use super::kafka_broker::{self, Node};
use super::PrivateProcess;

/// Three `nats-server`s routed to each other, each with its own JetStream store.
pub struct NatsCluster {
    pub nodes: Vec<PrivateProcess>,
}

impl NatsCluster {
    /// Starts the three servers, or `None` (the test is ignored, saying why)
    /// when `nats-server` is missing outside CI.
    pub fn start() -> Option<Self> {
        let binary = super::nats_server_binary()?;
        let cluster_ports: Vec<u16> = (0..3).map(|_| super::free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(index, cluster_port)| {
                let (binary, routes, cluster_port) =
                    (binary.clone(), routes.clone(), *cluster_port);
                PrivateProcess::start("nats-server", move |port, store| {
                    let mut command = Command::new(&binary);
                    command
                        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                        .args(["--server_name", &format!("sb-{index}")])
                        .args(["--cluster_name", "switchboard-test"])
                        .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
                        .args(["--routes", &routes])
                        .args(["-js", "-sd"])
                        .arg(store);
                    command
                })
            })
            .collect();
        Some(NatsCluster { nodes })
    }

    /// Every server of the cluster in one URL (the client picks one; when it
    /// dies, it moves to another).
    pub fn url(&self, options: &str) -> String {
        let hosts = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect::<Vec<_>>()
            .join(",");
        format!("nats://{hosts}?reconnect_delay_max=100ms&connect_timeout=2s{options}")
    }

    /// Only server 0, the one that will die: a client on it must move to the
    /// servers it learned from the cluster.
    pub fn first_only(&self, options: &str) -> String {
        self.only(0, options)
    }

    /// Only server `index`: a client stays there while it lives.
    pub fn only(&self, index: usize, options: &str) -> String {
        format!(
            "nats://127.0.0.1:{}?reconnect_delay_max=100ms&connect_timeout=2s{options}",
            self.nodes[index].port()
        )
    }
}

/// Three Apache Kafka brokers (KRaft, each also a controller), replicating
/// every topic three ways with `min.insync.replicas=2`.
pub struct KafkaCluster {
    pub brokers: Vec<PrivateProcess>,
}

impl KafkaCluster {
    /// Starts the three brokers and waits until each listens, or `None` (the
    /// test is ignored, saying why) when the broker's jars are missing outside CI.
    pub fn start() -> Option<Self> {
        let lib = kafka_broker::lib_dir()?;
        let controllers: Vec<(u32, u16)> = (1..=3).map(|id| (id, super::free_port())).collect();
        // Launch all three first: a broker only listens once the controllers have a quorum.
        let brokers: Vec<PrivateProcess> = controllers
            .iter()
            .map(|&(id, controller_port)| {
                let node = Node {
                    id,
                    controller_port,
                    voters: controllers.clone(),
                    replication: 3,
                };
                let lib = lib.clone();
                PrivateProcess::launch("kafka", move |port, dir| {
                    kafka_broker::command(&lib, &node, port, dir)
                })
            })
            .collect();
        for broker in &brokers {
            broker.wait_until_listening();
        }
        Some(KafkaCluster { brokers })
    }

    /// Every broker as `host:port`, comma separated.
    pub fn hosts(&self) -> String {
        self.brokers
            .iter()
            .map(|broker| format!("127.0.0.1:{}", broker.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index (into `brokers`) of the broker leading partition 0 of `topic`.
    #[cfg(feature = "kafka")]
    pub fn leader_of(&self, topic: &str) -> usize {
        use switchboard::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
        let hosts = self.hosts();
        let client: BaseConsumer = switchboard::kafka::rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &hosts)
            .create()
            .unwrap();
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let leader = metadata.topics()[0].partitions()[0].leader();
        // Node ids are 1, 2, 3 in the order the brokers were launched.
        usize::try_from(leader - 1).expect("partition 0 has a leader")
    }

    /// Every broker in one `kafka://` URL, topics replicated three ways.
    pub fn url(&self, options: &str) -> String {
        let hosts = self.hosts();
        format!("kafka://{hosts}?replication=3&connect_timeout=5s&delivery_timeout=20s{options}")
    }
}
