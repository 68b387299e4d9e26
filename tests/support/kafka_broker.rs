//! Private Apache Kafka brokers (KRaft, combined broker + controller) for the
//! fault tests, from the jars `scripts/kafka-broker.sh` fetches.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixed cluster id every private broker is formatted with (16 bytes, base64url).
const CLUSTER_ID: &str = "c3dpdGNoYm9hcmQtdGVzdA";

/// Where the broker's jars are, or `None` (the test is ignored, saying why)
/// when they were never fetched outside CI; under `CI=true` that fails.
pub fn lib_dir() -> Option<PathBuf> {
    let lib = std::env::var("KAFKA_LIB")
        .unwrap_or_else(|_| "/var/cache/switchboard/kafka-4.1.1/lib".into());
    let marker = super::find_binary(
        "Apache Kafka",
        &[format!("{lib}/.complete")],
        "scripts/kafka-broker.sh start fetches it",
    )?;
    Some(Path::new(&marker).parent().unwrap().to_owned())
}

/// One node of a cluster: its id, and every voter as `(id, controller port)`.
pub struct Node {
    pub id: u32,
    pub controller_port: u16,
    pub voters: Vec<(u32, u16)>,
    /// Copies of internal and created topics (the cluster's size).
    pub replication: usize,
}

/// The command that formats (once) and starts this node on `port` with its log under `dir`.
pub fn command(lib: &Path, node: &Node, port: u16, dir: &Path) -> Command {
    let voters = node
        .voters
        .iter()
        .map(|(id, controller)| format!("{id}@127.0.0.1:{controller}"))
        .collect::<Vec<_>>()
        .join(",");
    let replication = node.replication;
    let min_insync = replication.min(2);
    let properties = dir.join("server.properties");
    std::fs::write(
        &properties,
        format!(
            "process.roles=broker,controller\nnode.id={id}\n\
             controller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={log}\nnum.partitions=1\n\
             default.replication.factor={replication}\nmin.insync.replicas={min_insync}\n\
             offsets.topic.replication.factor={replication}\noffsets.topic.num.partitions=2\n\
             transaction.state.log.replication.factor={replication}\n\
             transaction.state.log.min.isr={min_insync}\n\
             group.initial.rebalance.delay.ms=0\n",
            id = node.id,
            controller = node.controller_port,
            log = dir.join("log").display(),
        ),
    )
    .expect("write server.properties");
    java_broker(lib, &properties, dir, &[])
}

/// Formats the log directory once (with `format_args`, e.g. SCRAM users) and
/// returns the command that starts the broker with `properties`.
fn java_broker(lib: &Path, properties: &Path, dir: &Path, format_args: &[String]) -> Command {
    let classpath = format!("{}/*", lib.display());
    if !dir.join("log/meta.properties").exists() {
        let formatted = Command::new("java")
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format"])
            .args(["-t", CLUSTER_ID, "-c"])
            .arg(properties)
            .args(format_args)
            .output()
            .expect("run the Kafka storage format tool");
        assert!(formatted.status.success(), "format failed: {formatted:?}");
    }
    let mut command = Command::new("java");
    command
        .args(["-Xms128m", "-Xmx512m", "-cp", &classpath, "kafka.Kafka"])
        .arg(properties);
    command
}

/// Users of a secured broker: `alice` (SASL PLAIN) and `bob` (SCRAM-SHA-256).
pub const SASL_USERS: [(&str, &str); 2] = [("alice", "alice-secret"), ("bob", "bob-secret")];

/// A single broker whose client listener on `port` is SASL_SSL: TLS with the
/// PEM key store `keystore` (key and certificate), users [`SASL_USERS`].
/// Broker-internal traffic uses plaintext listeners on other loopback ports.
pub fn secured_command(lib: &Path, keystore: &str, port: u16, dir: &Path) -> Command {
    let (internal, controller) = (super::free_port(), super::free_port());
    let (alice, alice_password) = SASL_USERS[0];
    let (bob, bob_password) = SASL_USERS[1];
    let properties = dir.join("server.properties");
    std::fs::write(
        &properties,
        format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=INTERNAL\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL\n\
             sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{alice}=\"{alice_password}\";\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n\
             log.dirs={log}\nnum.partitions=1\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=2\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            log = dir.join("log").display(),
        ),
    )
    .expect("write server.properties");
    let scram = format!("SCRAM-SHA-256=[name={bob},password={bob_password}]");
    java_broker(lib, &properties, dir, &["--add-scram".to_owned(), scram])
}
