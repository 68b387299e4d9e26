//! Two-process rows: the bench binary starts a copy of itself as the
//! responder (`SWITCHBOARD_BENCH_RESPONDER` set), so requester and responder
//! run in separate processes, as services do. The copy prints one `ready …`
//! line when it answers and is killed when the rows are done.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Set in the copy that serves as the responder.
const ROLE: &str = "SWITCHBOARD_BENCH_RESPONDER";
/// The subject prefix the copy serves under.
const PREFIX: &str = "SWITCHBOARD_BENCH_PREFIX";

/// The subject prefix when this process is the responder copy.
pub fn responder_prefix() -> Option<String> {
    std::env::var(ROLE).ok()?;
    std::env::var(PREFIX).ok()
}

/// Tells the parent the responder answers, with what it needs to reach it.
pub fn ready(detail: &str) {
    println!("ready {detail}");
}

/// Keeps the responder copy alive until the parent kills it (or goes away).
pub async fn serve_until_killed() {
    // The parent holds our stdin; when it exits, the read ends.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

/// A responder copy of this bench binary; killed when dropped.
pub struct Responder {
    child: Child,
    /// What the copy printed after `ready`.
    pub detail: String,
}

impl Responder {
    /// Starts the copy serving under `prefix` and waits for its `ready` line.
    pub fn start(prefix: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the bench binary"))
            .env(ROLE, "1")
            .env(PREFIX, prefix)
            .arg("--bench")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the responder process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the responder's ready line");
        let detail = line
            .trim()
            .strip_prefix("ready")
            .unwrap_or_else(|| panic!("the responder process said {line:?}"))
            .trim()
            .to_owned();
        Responder { child, detail }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
