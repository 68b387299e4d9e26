//! A private Redis server for tests that restart it or configure it (TLS):
//! free loopback ports, its append-only file in a directory of its own,
//! every write synced before it is acknowledged, from Debian's
//! `redis-server` package (`scripts/redis-server.sh` installs it). Killed
//! when dropped.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// One private server.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    /// The plain port (0 in the arguments when only TLS listens).
    pub port: u16,
    /// A second port, for a TLS listener the extra arguments may open.
    pub tls_port: u16,
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl PrivateRedis {
    /// Starts a server with `extra(&server)` as further arguments; skips
    /// (or, under CI, fails) when Redis is not installed.
    pub fn start(extra: impl FnOnce(&PrivateRedis) -> Vec<String>) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            let reason = "Redis is not installed (run scripts/redis-server.sh start)";
            assert!(!super::ci(), "{reason} and CI=true");
            super::skip(reason.into());
        }
        let mut server = PrivateRedis {
            dir: tempfile::tempdir().unwrap(),
            port: super::free_port(),
            tls_port: super::free_port(),
            extra: Vec::new(),
            child: Mutex::new(None),
        };
        server.extra = extra(&server);
        server.launch();
        Some(server)
    }

    /// Starts the server on its directory (the append-only file there is
    /// loaded) and waits until it takes connections.
    pub fn launch(&self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("redis-server starts");
        *self.child.lock().unwrap() = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the private Redis did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The append-only file is loaded before commands are served.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
