//! A private RabbitMQ node for tests that restart the broker or configure it
//! (TLS): free loopback ports, its database and configuration in a directory
//! of its own, from Debian's `rabbitmq-server` package
//! (`scripts/rabbitmq-server.sh` installs it). Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// One private node.
pub struct PrivateRabbit {
    dir: tempfile::TempDir,
    /// The plain AMQP port.
    pub port: u16,
    /// A second port, for a TLS listener the configuration may open.
    pub tls_port: u16,
    dist_port: u16,
}

impl PrivateRabbit {
    /// Starts a node whose `rabbitmq.conf` is `config(&node)`; skips (or,
    /// under CI, fails) when RabbitMQ is not installed.
    pub fn start(config: impl FnOnce(&PrivateRabbit) -> String) -> Option<Self> {
        if !Path::new(SERVER).exists() {
            let reason = "RabbitMQ is not installed (run scripts/rabbitmq-server.sh start)";
            assert!(!super::ci(), "{reason} and CI=true");
            super::skip(reason.into());
        }
        let node = PrivateRabbit {
            dir: tempfile::tempdir().unwrap(),
            port: super::free_port(),
            tls_port: super::free_port(),
            dist_port: super::free_port(),
        };
        std::fs::write(node.dir.path().join("enabled_plugins"), "[].").unwrap();
        std::fs::write(node.dir.path().join("rabbitmq.conf"), config(&node)).unwrap();
        node.launch();
        Some(node)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("node.pid")
    }

    /// Starts the node detached (its Erlang VM writes its pid) and waits
    /// until it takes connections.
    pub fn launch(&self) {
        let dir = self.dir.path();
        let status = Command::new(SERVER)
            .arg("-detached")
            .env("HOME", dir)
            .env(
                "RABBITMQ_NODENAME",
                format!("sbtest{}@localhost", self.port),
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
                "the private RabbitMQ node did not listen on {} (logs in {})",
                self.port,
                dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the node's Erlang VM: no clean shutdown.
    pub fn kill(&self) {
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
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill();
    }
}
