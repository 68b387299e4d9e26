//! Helpers shared by the backend test files (each test binary uses a subset).
#![allow(dead_code)]

use std::time::Duration;

pub mod certs;
pub mod clusters;
pub mod cut_proxy;
pub mod kafka_broker;
pub mod rabbitmq;
pub mod redis;

use switchboard::transport::{Incoming, Subscription};
use switchboard::{connect, Bus};

/// Whether this is a CI run, where an unreachable server fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Connects to a test server. When it is unreachable outside CI the test
/// stops here and the harness ([`tests!`]) reports it as *ignored* with the
/// reason; under `CI=true` an unreachable server fails the test.
pub async fn connect_or_skip(url: &str) -> Option<Bus> {
    match connect(url).await {
        Ok(bus) => Some(bus),
        Err(err) if ci() => panic!("{url} is unreachable and CI=true: {err}"),
        Err(err) => skip(format!(
            "{url} is unreachable ({err}); with CI=true this fails"
        )),
    }
}

/// Why a test did not run: raised by [`skip`], reported as ignored by [`tests!`].
pub struct Skip(pub String);

/// Ends the running test as ignored with `reason` (only under the [`tests!`] harness).
pub fn skip(reason: String) -> ! {
    std::panic::resume_unwind(Box::new(Skip(reason)))
}

/// Runs one async test on a two-worker runtime: a [`Skip`] becomes an ignored
/// trial with its reason, any other panic a failure.
pub fn run_trial<F>(test: fn() -> F) -> Result<libtest_mimic::Completion, libtest_mimic::Failed>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| libtest_mimic::Failed::from(format!("tokio runtime: {e}")))?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async move {
            match tokio::spawn(test()).await {
                Ok(()) => Ok(()),
                Err(err) if err.is_panic() => Err(err.into_panic()),
                Err(err) => Err(Box::new(err.to_string()) as Box<dyn std::any::Any + Send>),
            }
        })
    }));
    // A client closing against a server the test already stopped (a consumer
    // leaving its group) may block a pool thread for long: do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(10));
    let payload = match outcome {
        Ok(Ok(())) => return Ok(libtest_mimic::Completion::Completed),
        Ok(Err(payload)) | Err(payload) => payload,
    };
    if let Some(Skip(reason)) = payload.downcast_ref::<Skip>() {
        return Ok(libtest_mimic::Completion::ignored_with(reason.clone()));
    }
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "test panicked".into());
    Err(libtest_mimic::Failed::from(message))
}

/// The `main` of a test file whose tests need servers: lists its async test
/// functions, runs them with libtest-mimic, and reports a test whose server is
/// unreachable as ignored with the reason (failed under `CI=true`).
#[macro_export]
macro_rules! tests {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {
        fn main() -> std::process::ExitCode {
            let arguments = libtest_mimic::Arguments::from_args();
            #[allow(unused_mut)]
            let mut trials = Vec::new();
            $(
                $(#[$meta])*
                trials.push(libtest_mimic::Trial::ignorable_test(stringify!($name), || {
                    support::run_trial($name)
                }));
            )*
            libtest_mimic::run(&arguments, trials).exit_code()
        }
    };
}

/// A name no other test or run uses: one subject token (also a valid stream name).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The next message, or `None` if none arrives within `within`.
pub async fn next_within(subscription: &mut Subscription, within: Duration) -> Option<Incoming> {
    tokio::time::timeout(within, subscription.next())
        .await
        .ok()
        .flatten()
}

/// The shared NATS server the tests use.
pub fn nats_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

/// The shared Kafka-protocol broker the tests use.
pub fn kafka_url() -> String {
    "kafka://127.0.0.1:9092".to_owned()
}

/// A loopback TCP port that was free a moment ago, and that this process
/// has not handed out before: the OS may offer a just-released port again,
/// and a cluster given one port twice (a broker's and a controller's) fails.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("bind a loopback port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Publishes `count` numbered events (`0`, `1`, …), one every `interval`,
/// while `outage` runs on a blocking thread from a third of the way in (it
/// stops a server, waits, and starts it again, returning it). A publish that
/// fails with one of `expected` error kinds is retried with the same number
/// until accepted, so what was accepted is what must arrive; any other error
/// fails the test. Returns the server, the number at which the outage began,
/// and how many attempts failed.
pub async fn publish_through_outage<S: Send + 'static>(
    server: S,
    outage: impl FnOnce(S) -> S + Send + 'static,
    publisher: &Bus,
    subject: &str,
    count: u32,
    interval: Duration,
    expected: &[switchboard::ErrorKind],
) -> (S, u32, u32) {
    let mut failed_attempts = 0;
    let mut pending = Some((server, outage));
    let mut restart = None;
    for seq in 0..count {
        if seq == count / 3 {
            let (server, outage) = pending.take().unwrap();
            restart = Some(tokio::task::spawn_blocking(move || outage(server)));
        }
        // A replicated stream or partition whose leader died elects another
        // after election timeouts of seconds, and a split vote starts over:
        // on a starved 2-core machine that can take tens of seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // The same idempotency key on every try: a backend that de-duplicates
        // (JetStream) stores an event once even if an earlier try's ack was lost.
        let message =
            switchboard::Message::new(seq.to_string()).with_id(format!("{subject}-{seq}"));
        while let Err(err) = publisher.publish(subject, message.clone()).await {
            assert!(
                expected.contains(&err.kind()),
                "unclear error during the outage: {err:?}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "publishing never recovered: {err}"
            );
            failed_attempts += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(interval).await;
    }
    let server = restart.unwrap().await.unwrap();
    (server, count / 3, failed_attempts)
}

/// Polls `bus.health()` every 20 ms until `wanted` says yes, for at most
/// `within`; the last health seen.
async fn health_until(
    bus: &switchboard::Bus,
    wanted: impl Fn(&switchboard::transport::Health) -> bool,
    within: Duration,
) -> switchboard::transport::Health {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let health = bus.health();
        if wanted(&health) || tokio::time::Instant::now() >= deadline {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reason `bus.health()` gives once it is degraded, within `within`;
/// panics with the health seen if it is not by then.
pub async fn degraded_within(bus: &switchboard::Bus, within: Duration) -> String {
    use switchboard::transport::Health;
    match health_until(bus, |health| matches!(health, Health::Degraded(_)), within).await {
        Health::Degraded(why) => why,
        other => panic!("health {other:?} after {within:?}, not degraded"),
    }
}

/// Waits until `bus.health()` is connected, within `within`; panics with
/// the health seen if it is not by then.
pub async fn connected_within(bus: &switchboard::Bus, within: Duration) {
    use switchboard::transport::Health;
    let health = health_until(bus, |health| *health == Health::Connected, within).await;
    assert_eq!(health, Health::Connected, "health after {within:?}");
}

/// Receives numbered events (`0`, `1`, … as text), acknowledging each, until
/// `count` distinct numbers arrived (when given) or nothing came for `quiet`.
/// A `warm-up` event (sent to create a topic) is acknowledged and skipped.
/// Returns the numbers seen and how many deliveries carried a number, so
/// `deliveries - seen.len()` counts redeliveries.
pub async fn collect_numbered(
    sub: &mut Subscription,
    count: Option<u32>,
    quiet: Duration,
) -> (std::collections::BTreeSet<u32>, u32) {
    let mut seen = std::collections::BTreeSet::new();
    let mut deliveries = 0u32;
    let mut failed_acks = 0u32;
    while let Some(mut incoming) = next_within(sub, quiet).await {
        let text = std::str::from_utf8(incoming.payload()).unwrap();
        if text != "warm-up" {
            deliveries += 1;
            seen.insert(text.parse().unwrap());
        }
        // An acknowledgement sent while the server is down fails; the event
        // then comes again and counts as a redelivery, never as a loss.
        if let Err(err) = incoming.ack().await {
            failed_acks += 1;
            eprintln!("acknowledgement failed ({err}); the event will be redelivered");
        }
        if count.is_some_and(|count| seen.len() as u32 == count) {
            break;
        }
    }
    if failed_acks > 0 {
        eprintln!("{failed_acks} acknowledgement(s) failed during the run");
    }
    (seen, deliveries)
}

/// Connects to a cluster that was just started, retrying until it answers
/// (a fresh cluster elects its leaders first) for at most `within`.
pub async fn connect_when_ready(url: &str, within: Duration) -> Bus {
    let deadline = std::time::Instant::now() + within;
    loop {
        match connect(url).await {
            Ok(bus) => return bus,
            Err(err) if std::time::Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {err}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("the cluster never became ready: {err}"),
        }
    }
}

/// The `nats-server` binary, or `None` (the test is ignored, saying why)
/// when it is missing outside CI.
pub fn nats_server_binary() -> Option<String> {
    let candidates = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .map(String::from);
    find_binary(
        "nats-server",
        &candidates,
        "scripts/nats-server.sh installs it",
    )
}

/// The first of `candidates` that exists, or `None` (the test skips, saying
/// why) when none does outside CI; under `CI=true` a missing binary panics.
pub fn find_binary(name: &str, candidates: &[String], install_hint: &str) -> Option<String> {
    if let Some(found) = candidates
        .iter()
        .find(|path| std::path::Path::new(path).exists())
    {
        return Some(found.clone());
    }
    if ci() {
        panic!("{name} binary not found and CI=true ({install_hint})");
    }
    skip(format!("{name} binary not found ({install_hint})"))
}

/// Builds the command that starts a private server on a port with a data directory.
type ServerCommand = Box<dyn Fn(u16, &std::path::Path) -> std::process::Command + Send>;

/// A server process of the test's own on a free loopback port, with its own
/// data directory that survives restarts; killed when dropped.
pub struct PrivateProcess {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
    command: ServerCommand,
    process: Option<std::process::Child>,
}

impl PrivateProcess {
    /// Starts `command(port, dir)` and waits until it listens on the port.
    pub fn start(
        name: &str,
        command: impl Fn(u16, &std::path::Path) -> std::process::Command + Send + 'static,
    ) -> Self {
        let server = Self::launch(name, command);
        server.wait_until_listening();
        server
    }

    /// Starts `command(port, dir)` without waiting, for cluster members that
    /// only listen once enough of their peers are up.
    pub fn launch(
        name: &str,
        command: impl Fn(u16, &std::path::Path) -> std::process::Command + Send + 'static,
    ) -> Self {
        let mut server = PrivateProcess {
            name: name.to_owned(),
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            command: Box::new(command),
            process: None,
        };
        server.launch_process();
        server
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (the data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Kills it and starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.launch_process();
        self.wait_until_listening();
    }

    fn launch_process(&mut self) {
        let child = (self.command)(self.port, self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.name));
        self.process = Some(child);
    }

    /// Waits until the process listens on its port.
    pub fn wait_until_listening(&self) {
        // A JVM broker takes a few seconds to listen; a busy 2-core machine more.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not listen on {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A handler that records each numbered event it handles (dedup tests).
pub async fn record(
    n: u32,
    switchboard::handler::State(seen): switchboard::handler::State<
        tokio::sync::mpsc::UnboundedSender<u32>,
    >,
) {
    let _ = seen.send(n);
}

/// What [`record`] handled, until `last` arrived (10 s at most).
pub async fn handled_until(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<u32>,
    last: u32,
) -> Vec<u32> {
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        match tokio::time::timeout(Duration::from_secs(10), seen.recv()).await {
            Ok(Some(n)) => got.push(n),
            _ => break,
        }
    }
    got
}

/// Asks `subject` for `1 + 1` (a handler answering `n + 1`) until it is
/// answered, after the backend lost a channel or a connection: an error of
/// a kind in `recovering` (any kind, when empty) is tried again every 50 ms
/// for up to `within`; any other error, or no answer by then, fails the test.
pub async fn answer_once_recovered(
    bus: &Bus,
    subject: &str,
    recovering: &[switchboard::ErrorKind],
    within: Duration,
) -> u32 {
    let deadline = std::time::Instant::now() + within;
    loop {
        match bus
            .request_json_with_timeout::<_, u32>(subject, &1, within)
            .await
        {
            Ok(answer) => return answer,
            Err(err) => {
                assert!(
                    recovering.is_empty() || recovering.contains(&err.kind()),
                    "{err}"
                );
                assert!(
                    std::time::Instant::now() < deadline,
                    "requests did not recover: {err}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
