//! The `switchboard` command-line tool round-trips a request against every
//! backend CI runs, each side in its own process.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

fn cli(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .env_remove("SWITCHBOARD_URL")
        .output()
        .expect("run the switchboard binary")
}

/// Starts the CLI with `args` and waits for its first stderr line, which must
/// start with `announcement` (it is live then); returns the rest of its stderr.
fn spawn_announced(
    args: &[&str],
    stdout: Stdio,
    announcement: &str,
) -> (Child, BufReader<ChildStderr>) {
    let mut child = Command::new(CLI)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the switchboard binary");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read its first line");
    assert!(line.starts_with(announcement), "{args:?} said: {line}");
    (child, stderr)
}

/// `reply` in one process, `req` in another; the reply must come back and the responder exit.
fn round_trip(responder_url: &str, requester_url: &str) {
    round_trip_announcing(responder_url, requester_url, "answering");
}

/// [`round_trip`], where the responder's first line must start with
/// `announcement` (`{subject}` in it stands for the subject used).
fn round_trip_announcing(responder_url: &str, requester_url: &str, announcement: &str) {
    let subject = format!("cli.{}", support::unique("echo"));
    let announcement = announcement.replace("{subject}", &subject);
    let (mut responder, _) = spawn_announced(
        &[
            "--url",
            responder_url,
            "reply",
            &subject,
            "--fixed",
            "pong",
            "--count",
            "1",
        ],
        Stdio::null(),
        &announcement,
    );
    let output = cli(&[
        "--url",
        requester_url,
        "req",
        &subject,
        "ping",
        "--timeout",
        "20s",
    ]);
    assert!(
        output.status.success(),
        "req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "pong");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = responder.try_wait().unwrap() {
            assert!(status.success(), "responder exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "responder did not exit after --count 1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server at `url` answers; under CI an unreachable server fails the test.
async fn reachable(url: &str) -> bool {
    support::connect_or_skip(url).await.is_some()
}

async fn bad_input_fails_with_a_clear_message() {
    let output = cli(&["--url", "nats://[::1", "req", "a", "b"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("malformed URL"));
    let output = cli(&["req", "bad..subject", "x"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad..subject"));
    let output = cli(&["pub", "a", "b", "-H", "no-equals-sign"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NAME=VALUE"));
}

async fn bench_runs_on_memory() {
    for mode in ["request", "publish"] {
        let output = cli(&["bench", "--mode", mode, "--count", "2000"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("2000 of 2000 messages")
                && stdout.contains("msg/s, 0 error(s)")
                && stdout.contains("in this process")
                && stdout.contains("latency: p50"),
            "{stdout}"
        );
    }
}

#[cfg(feature = "nats")]
async fn request_round_trip_on_nats() {
    let url = support::nats_url();
    if reachable(&url).await {
        round_trip(&url, &url);
    }
}

#[cfg(feature = "kafka")]
async fn request_round_trip_on_kafka() {
    let url = support::kafka_url();
    if reachable(&url).await {
        round_trip(&url, &url);
    }
}

/// `bench --responder none` against a `switchboard reply` in another
/// process: throughput, percentiles and zero errors across processes, as text
/// and as JSON; the responder logs one line per request it answers.
#[cfg(feature = "nats")]
async fn bench_across_processes_on_nats() {
    let url = support::nats_url();
    if !reachable(&url).await {
        return;
    }
    let subject = format!("cli.{}", support::unique("bench"));
    let (mut responder, log) = spawn_announced(
        &["--url", &url, "reply", &subject],
        Stdio::null(),
        "answering",
    );
    // Read the responder's log as it goes, so a full pipe never stalls it.
    let logged = std::thread::spawn(move || log.lines().map_while(Result::ok).collect::<Vec<_>>());
    let bench = |extra: &[&str]| {
        let mut args = vec!["--url", &url, "bench", "--responder", "none"];
        args.extend(["--subject", &subject]);
        args.extend(extra);
        let output = cli(&args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let text = bench(&["--count", "2000"]);
    assert!(
        text.contains("responder in another process")
            && text.contains("2000 of 2000 messages")
            && text.contains("latency: p50"),
        "{text}"
    );
    let json = bench(&["--count", "500", "--json"]);
    let figures: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(figures["responder"], "other-process", "{json}");
    assert_eq!(figures["completed"], 500, "{json}");
    assert_eq!(figures["errors"], 0, "{json}");
    assert_eq!(figures["timeouts"], 0, "{json}");
    let (p50, p99) = (&figures["latency_us"]["p50"], &figures["latency_us"]["p99"]);
    assert!(p50.as_u64().is_some_and(|p50| p50 > 0), "{json}");
    assert!(p99.as_u64() >= p50.as_u64(), "{json}");
    let _ = responder.kill();
    let _ = responder.wait();
    let answered = logged.join().unwrap();
    let per_request = answered.iter().filter(|l| l.starts_with("[#")).count();
    assert_eq!(per_request, 2500, "one log line per answered request");
    assert!(
        answered.iter().any(|l| l.starts_with("[#2500] cli.")),
        "{:?}",
        answered.last()
    );
    let without_subject = cli(&["--url", &url, "bench", "--responder", "none"]);
    assert!(!without_subject.status.success());
    assert!(String::from_utf8_lossy(&without_subject.stderr).contains("--subject"));
}

/// A `req` on memory:// finds no responder in its own new process, and says
/// why instead of leaving the user to guess; `sub` prints headers on request.
async fn memory_is_explained_and_sub_prints_headers() {
    let output = cli(&["--url", "memory://", "req", "orders.get", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only reaches subscribers in this same process"),
        "{stderr}"
    );
    #[cfg(feature = "nats")]
    {
        let url = support::nats_url();
        if !reachable(&url).await {
            return;
        }
        let subject = format!("cli.{}", support::unique("headers"));
        let (subscriber, _) = spawn_announced(
            &["--url", &url, "sub", &subject, "--headers", "--count", "1"],
            Stdio::piped(),
            "subscribed",
        );
        let published = cli(&["--url", &url, "pub", &subject, "hello", "-H", "tenant=acme"]);
        assert!(published.status.success());
        let printed = subscriber.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&printed.stdout);
        assert_eq!(stdout, format!("{subject} hello\n  tenant: acme\n"));
    }
}

#[cfg(feature = "http")]
async fn request_round_trip_on_http() {
    let port = support::free_port();
    round_trip(
        &format!("http://127.0.0.1:{port}"),
        &format!("http://127.0.0.1:0?peers=http://127.0.0.1:{port}"),
    );
}

/// On gRPC the responder announces its `grpc://` address, which a requester can peer with.
#[cfg(feature = "grpc")]
async fn request_round_trip_on_grpc() {
    let port = support::free_port();
    round_trip_announcing(
        &format!("grpc://127.0.0.1:{port}"),
        &format!("grpc://127.0.0.1:0?peers=grpc://127.0.0.1:{port}"),
        &format!("answering {{subject}} at grpc://127.0.0.1:{port}"),
    );
}

/// `outbox groups` lists what an outbox file remembers; `outbox forget`
/// forgets a group; a missing file or unknown group is a clear failure.
#[cfg(feature = "outbox")]
async fn outbox_groups_are_listed_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let settings = switchboard::settings::OutboxSettings {
        path: Some(path.clone()),
        ..Default::default()
    };
    let hub = format!("memory://{}", support::unique("cli-outbox"));
    let bus = switchboard::connect(&hub)
        .await
        .unwrap()
        .with_outbox(&settings)
        .await
        .unwrap();
    let mut billing = bus
        .queue_subscribe("orders.placed", "billing")
        .await
        .unwrap();
    bus.publish("orders.placed", switchboard::Message::new("1"))
        .await
        .unwrap();
    support::next_within(&mut billing, Duration::from_secs(10))
        .await
        .expect("billing takes the event");
    // The relay writes the group it saw at the end of its pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.close().await.unwrap();
    let file = path.to_str().unwrap();

    let listed = cli(&["outbox", "groups", file]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        text.starts_with("billing on orders.placed: last seen "),
        "{text}"
    );
    assert!(text.contains("0 event(s) held"), "{text}");

    let forgot = cli(&["outbox", "forget", file, "billing"]);
    assert!(forgot.status.success(), "{forgot:?}");
    let listed = cli(&["outbox", "groups", file]);
    assert!(listed.stdout.is_empty(), "{listed:?}");
    let again = cli(&["outbox", "forget", file, "billing"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("remembers no queue group `billing`"));
    let missing = cli(&[
        "outbox",
        "groups",
        dir.path().join("nope.db").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no outbox file at"));
}

/// `dead-letters keep` in its own process keeps what a service gives up on;
/// `list` and `show` print it with its code and cause; `replay` sends it
/// back to the (fixed) service and empties the store; `purge` of an id not
/// kept fails. Against NATS, each command its own process.
#[cfg(all(feature = "nats", feature = "dead-letters"))]
async fn dead_letters_are_kept_listed_and_replayed_across_processes() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    let url = support::nats_url();
    if !reachable(&url).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("dead-letters.db");
    let store = store.to_str().unwrap();
    let name = support::unique("cli-dl");
    let subject = format!("{name}.place");
    let pattern = format!("dead-letter.{name}");
    let (mut keeper, mut log) = spawn_announced(
        &[
            "--url",
            &url,
            "dead-letters",
            "keep",
            "--store",
            store,
            "--pattern",
            &pattern,
            "--count",
            "1",
        ],
        Stdio::null(),
        "keeping dead letters",
    );
    let bus = switchboard::connect(&url).await.unwrap();
    let fixed = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(AtomicU32::new(0));
    let service = {
        let (fixed, handled) = (fixed.clone(), handled.clone());
        switchboard::Service::new(&name, bus.clone())
            .on(&subject, move |quantity: u32| {
                let (fixed, handled) = (fixed.clone(), handled.clone());
                async move {
                    if !fixed.load(Ordering::SeqCst) {
                        return Err(switchboard::handler::Rejection::new("too many")
                            .with_code("quantity_over_limit")
                            .permanent());
                    }
                    handled.fetch_add(quantity, Ordering::SeqCst);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    bus.publish_json(&subject, &42u32).await.unwrap();
    let (status, said) = tokio::task::spawn_blocking(move || {
        let mut said = String::new();
        std::io::Read::read_to_string(&mut log, &mut said).unwrap();
        (keeper.wait().unwrap(), said)
    })
    .await
    .unwrap();
    assert!(
        status.success() && said.contains("kept 1 dead letter(s); 0 could not be kept"),
        "keep: {said}"
    );

    let list = cli(&["dead-letters", "list", "--store", store]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for part in [
        subject.as_str(),
        "attempts=1",
        "code=quantity_over_limit",
        "cause=final",
        "too many",
    ] {
        assert!(listed.contains(part), "`{part}` in: {listed}");
    }
    let id = listed.split('\t').next().unwrap().to_owned();
    let show = cli(&["dead-letters", "show", "--store", store, &id]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("payload (2 bytes): 42") && shown.contains(&format!("service: {name}")),
        "{shown}"
    );

    fixed.store(true, Ordering::SeqCst);
    let replay = cli(&[
        "--url",
        &url,
        "dead-letters",
        "replay",
        "--store",
        store,
        &id,
    ]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::SeqCst) != 42 {
        assert!(
            Instant::now() < deadline,
            "the replayed event was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = cli(&["dead-letters", "list", "--store", store]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "",
        "replayed ones leave the store"
    );
    let purge = cli(&["dead-letters", "purge", "--store", store, &id]);
    assert!(!purge.status.success());
    assert!(String::from_utf8_lossy(&purge.stderr).contains(&format!("no dead letter {id}")));
    assert!(service.shutdown().await.is_clean());
    bus.close().await.unwrap();
}

crate::tests!(
    bad_input_fails_with_a_clear_message,
    bench_runs_on_memory,
    memory_is_explained_and_sub_prints_headers,
    #[cfg(feature = "nats")]
    request_round_trip_on_nats,
    #[cfg(feature = "nats")]
    bench_across_processes_on_nats,
    #[cfg(feature = "kafka")]
    request_round_trip_on_kafka,
    #[cfg(feature = "http")]
    request_round_trip_on_http,
    #[cfg(feature = "grpc")]
    request_round_trip_on_grpc,
    #[cfg(feature = "outbox")]
    outbox_groups_are_listed_and_forgotten,
    #[cfg(all(feature = "nats", feature = "dead-letters"))]
    dead_letters_are_kept_listed_and_replayed_across_processes,
);
