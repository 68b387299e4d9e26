//! The RabbitMQ broker killed (SIGKILL) and restarted mid-stream: publishes
//! during the outage fail clearly or succeed after the client reconnects,
//! and every accepted event reaches the consumer group, the durable queue
//! and persistent messages having kept what the broker confirmed. Runs a
//! private RabbitMQ node with its data in its own directory, from Debian's
//! `rabbitmq-server` package (`scripts/rabbitmq-server.sh` installs it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use switchboard::{connect, ErrorKind};

const OUTAGE: Duration = Duration::from_millis(500);
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A private RabbitMQ node on free loopback ports, its database in a
/// directory that survives a restart; killed when dropped.
struct PrivateRabbit {
    dir: tempfile::TempDir,
    port: u16,
    dist_port: u16,
}

impl PrivateRabbit {
    fn start() -> Option<Self> {
        if !Path::new(SERVER).exists() {
            let reason = "RabbitMQ is not installed (run scripts/rabbitmq-server.sh start)";
            assert!(!support::ci(), "{reason} and CI=true");
            support::skip(reason.into());
        }
        let node = PrivateRabbit {
            dir: tempfile::tempdir().unwrap(),
            port: support::free_port(),
            dist_port: support::free_port(),
        };
        std::fs::write(node.dir.path().join("enabled_plugins"), "[].").unwrap();
        node.launch();
        Some(node)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("node.pid")
    }

    /// Starts the node detached (its Erlang VM writes its pid) and waits
    /// until it takes connections.
    fn launch(&self) {
        let dir = self.dir.path();
        let status = Command::new(SERVER)
            .arg("-detached")
            .env("HOME", dir)
            .env(
                "RABBITMQ_NODENAME",
                format!("sbrestart{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmq-server -detached failed");
        // RabbitMQ listens only once it has loaded its database.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the private RabbitMQ node did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the node's Erlang VM: no clean shutdown.
    fn kill(&self) {
        let pid = std::fs::read_to_string(self.pid_file()).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() {
            return;
        }
        let _ = Command::new("kill").args(["-9", pid]).status();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    fn url(&self) -> String {
        format!(
            "amqp://127.0.0.1:{}?connect_timeout=5s&publish_timeout=3s",
            self.port
        )
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn no_accepted_event_is_lost_across_a_broker_restart() {
    const COUNT: u32 = 300;
    let Some(broker) = PrivateRabbit::start() else {
        return;
    };
    let url = broker.url();
    let publisher = connect(&url).await.unwrap();
    let subscriber = connect(&url).await.unwrap();
    let subject = "fault.durable";
    let mut sub = subscriber
        .queue_subscribe(subject, "fault-group")
        .await
        .unwrap();
    let collecting = tokio::spawn(async move {
        support::collect_numbered(&mut sub, Some(COUNT), Duration::from_secs(60)).await
    });
    let outage = |broker: PrivateRabbit| {
        broker.kill();
        std::thread::sleep(OUTAGE);
        broker.launch();
        broker
    };
    let expected = [ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Connect];
    let (_broker, began, failed_attempts) = support::publish_through_outage(
        broker,
        outage,
        &publisher,
        subject,
        COUNT,
        Duration::from_millis(5),
        &expected,
    )
    .await;
    let (seen, deliveries) = collecting.await.unwrap();
    let missing: Vec<u32> = (0..COUNT).filter(|seq| !seen.contains(seq)).collect();
    println!(
        "RabbitMQ (durable queue, persistent messages): {} of {COUNT} accepted events consumed \
         across a SIGKILL and {OUTAGE:?} outage at event {began} ({} delivered twice, \
         at-least-once; {failed_attempts} publish attempts failed and were retried)",
        seen.len(),
        deliveries - seen.len() as u32
    );
    assert!(missing.is_empty(), "accepted events were lost: {missing:?}");
    let _ = publisher.close().await;
    let _ = subscriber.close().await;
}

crate::tests!(no_accepted_event_is_lost_across_a_broker_restart,);
