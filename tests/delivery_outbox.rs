//! The outbox: async sends held in an SQLite file until a recipient took
//! them. A service that is away gets its events when it returns, in order; a
//! sender killed with SIGKILL loses nothing it accepted (this binary runs
//! copies of itself as the sender and the later relay); expired events are
//! dead-lettered with the reason; a full outbox refuses; a bad store file
//! is a clear error at start. Deduplication by message id keeps its ids in
//! the same file: across a restart, for its window, and not without a file.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard::{Bus, ErrorKind, Message, Sent, Settings};

/// Settings with `orders.place` async on `hub`, and an outbox at `path`
/// with the extra `[outbox]` lines.
fn settings(hub: &str, path: &Path, outbox: &str) -> Settings {
    Settings::from_toml(&format!(
        r#"
        [transports.default]
        url = "{hub}"

        [[routes]]
        subjects = "orders.>"
        style = "async"

        [outbox]
        path = "{}"
        {outbox}
        "#,
        path.display()
    ))
    .unwrap()
}

fn hub() -> String {
    format!("memory://{}", support::unique("outbox"))
}

async fn send_numbered(bus: &Bus, range: std::ops::Range<u32>) {
    for n in range {
        let sent: Sent<()> = bus.send("orders.place", &n).await.unwrap();
        assert!(sent.is_accepted());
    }
}

/// Receives numbered events until `count` arrived or 10 s passed; returns
/// them in arrival order.
async fn receive(
    subscription: &mut switchboard::transport::Subscription,
    count: usize,
) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < count {
        let Some(incoming) = support::next_within(subscription, Duration::from_secs(10)).await
        else {
            break;
        };
        got.push(serde_json::from_slice(incoming.payload()).unwrap());
    }
    got
}

/// Nobody subscribes while 100 orders are sent: all are accepted and held;
/// the subscriber that arrives gets all 100, in order, once. Without the
/// outbox the same sends go nowhere (counted as unrouted).
async fn a_service_away_gets_its_events_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let bus = settings(&hub(), &dir.path().join("outbox.db"), "")
        .connect()
        .await
        .unwrap();
    send_numbered(&bus, 0..100).await;
    let stats = bus.outbox_stats().unwrap();
    assert_eq!(stats.pending, 100, "{stats:?}");
    let mut orders = bus.queue_subscribe("orders.place", "orders").await.unwrap();
    let got = receive(&mut orders, 100).await;
    assert_eq!(
        got,
        (0..100).collect::<Vec<_>>(),
        "every held event, in order, once"
    );
    assert!(
        support::next_within(&mut orders, Duration::from_millis(300))
            .await
            .is_none(),
        "a duplicate arrived"
    );
    wait_until_empty(&bus).await;
    assert_eq!(bus.unrouted_total(), 0);
    bus.close().await.unwrap();

    // The trade-off, measured: the same sends without the outbox.
    let plain = Settings::from_toml(&format!(
        "[transports.default]\nurl = \"{}\"\n[[routes]]\nsubjects = \"orders.>\"\nstyle = \"async\"\n",
        hub()
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    send_numbered(&plain, 0..100).await;
    let mut late = plain
        .queue_subscribe("orders.place", "orders")
        .await
        .unwrap();
    assert!(support::next_within(&mut late, Duration::from_millis(300))
        .await
        .is_none());
    assert_eq!(
        plain.unrouted_total(),
        100,
        "at most once: every send reached nobody, and was counted"
    );
}

async fn wait_until_empty(bus: &Bus) {
    for _ in 0..100 {
        if bus.outbox_stats().unwrap().pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox still holds {:?}", bus.outbox_stats());
}

/// What a child process does: `send` accepts numbered orders forever,
/// printing each number once accepted; `relay` opens the same file with a
/// subscriber and prints what it receives.
const ROLE: &str = "SB_OUTBOX_TEST_ROLE";
const FILE: &str = "SB_OUTBOX_TEST_FILE";
const HUB: &str = "SB_OUTBOX_TEST_HUB";

async fn child(role: &str) {
    let path = std::env::var(FILE).unwrap();
    let bus = settings(&std::env::var(HUB).unwrap(), Path::new(&path), "")
        .connect()
        .await
        .unwrap();
    let mut out = std::io::stdout();
    match role {
        "fill" => {
            // 1 KiB orders until the file cannot grow: the send that fails says
            // why, and every one accepted before it is in the file.
            let order = "x".repeat(1024);
            for n in 0u32.. {
                match bus.send::<_, ()>("orders.place", &(n, &order)).await {
                    Ok(sent) => {
                        assert!(sent.is_accepted());
                        writeln!(out, "{n}").unwrap();
                    }
                    Err(err) => {
                        writeln!(out, "refused {:?}: {err}", err.kind()).unwrap();
                        break;
                    }
                }
            }
            out.flush().unwrap();
            let _ = bus.close().await;
        }
        "send" => {
            for n in 0u32.. {
                let sent: Sent<()> = bus.send("orders.place", &n).await.unwrap();
                assert!(sent.is_accepted());
                writeln!(out, "{n}").unwrap();
                out.flush().unwrap();
            }
        }
        _ => {
            let mut orders = bus.queue_subscribe("orders.place", "orders").await.unwrap();
            while let Some(incoming) =
                support::next_within(&mut orders, Duration::from_secs(3)).await
            {
                // A plain number, or a (number, padding) pair from the "fill" role.
                let n = serde_json::from_slice::<u32>(incoming.payload())
                    .or_else(|_| {
                        serde_json::from_slice::<(u32, String)>(incoming.payload()).map(|(n, _)| n)
                    })
                    .unwrap();
                writeln!(out, "{n}").unwrap();
            }
            out.flush().unwrap();
        }
    }
}

/// A full disk: a sender whose file may not grow past 256 KiB (`ulimit -f`,
/// with SIGXFSZ ignored, so a write fails as on a full disk) gets a clear
/// error for the send that does not fit, not a panic; every send accepted
/// before it is delivered by the next process that opens the file.
async fn a_full_disk_refuses_the_send_and_keeps_what_was_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let hub = hub();
    let exe = std::env::current_exe().unwrap();
    let filled = Command::new("bash")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 256; exec \"$0\"",
            exe.to_str().unwrap(),
        ])
        .env(ROLE, "fill")
        .env(FILE, &path)
        .env(HUB, &hub)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&filled.stdout).into_owned();
    assert!(
        filled.status.success(),
        "the filling sender failed: {filled:?}"
    );
    let (accepted, refusal): (Vec<&str>, Vec<&str>) = printed
        .lines()
        .partition(|line| !line.starts_with("refused"));
    let accepted: BTreeSet<u32> = accepted.iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(refusal.len(), 1, "{printed}");
    assert!(
        refusal[0].contains("full")
            || refusal[0].contains("too large")
            || refusal[0].contains("I/O"),
        "the refusal says why: {}",
        refusal[0]
    );
    assert!(accepted.len() > 10, "{printed}");
    let relay = Command::new(exe)
        .env(ROLE, "relay")
        .env(FILE, &path)
        .env(HUB, &hub)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(relay.status.success());
    let received: BTreeSet<u32> = String::from_utf8(relay.stdout)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let lost: Vec<&u32> = accepted.difference(&received).collect();
    eprintln!(
        "{} sends accepted before the file was full ({}); {} delivered after",
        accepted.len(),
        refusal[0],
        received.len()
    );
    assert!(lost.is_empty(), "accepted sends lost: {lost:?}");
}

/// A sender killed with SIGKILL mid-stream: everything it had accepted is
/// delivered by the next process that opens the file, once each.
async fn a_sender_killed_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let hub = hub();
    let spawn = |role: &str| {
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .env(FILE, &path)
            .env(HUB, &hub)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut sender = spawn("send");
    let mut accepted = BTreeSet::new();
    for line in BufReader::new(sender.stdout.take().unwrap()).lines() {
        accepted.insert(line.unwrap().parse::<u32>().unwrap());
        if accepted.len() == 500 {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no goodbye.
    sender.kill().unwrap();
    sender.wait().unwrap();
    let relay = spawn("relay").wait_with_output().unwrap();
    assert!(relay.status.success());
    let received: Vec<u32> = String::from_utf8(relay.stdout)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let distinct: BTreeSet<u32> = received.iter().copied().collect();
    let lost: Vec<&u32> = accepted.difference(&distinct).collect();
    let duplicates = received.len() - distinct.len();
    eprintln!(
        "killed after {} accepted sends (and perhaps a few more unreported); the next process delivered {} ({} distinct, {duplicates} duplicates)",
        accepted.len(),
        received.len(),
        distinct.len()
    );
    assert!(lost.is_empty(), "accepted sends lost: {lost:?}");
    // Nothing was delivered before the kill (nobody subscribed), so nothing comes twice.
    assert_eq!(duplicates, 0);
    let in_order: Vec<u32> = received.clone();
    let mut sorted = in_order.clone();
    sorted.sort_unstable();
    assert_eq!(in_order, sorted, "held events arrive in send order");
}

/// An event nobody takes within `max_age` is dead-lettered with the reason and counted.
async fn an_event_nobody_takes_in_time_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let bus = settings(&hub(), &dir.path().join("outbox.db"), "max_age = \"300ms\"")
        .connect()
        .await
        .unwrap();
    let mut dead_letters = bus.subscribe("dead-letter.outbox").await.unwrap();
    let sent: Sent<()> = bus.send("orders.place", &7).await.unwrap();
    assert!(sent.is_accepted());
    let letter = support::next_within(&mut dead_letters, Duration::from_secs(10))
        .await
        .expect("the expired event is dead-lettered");
    assert_eq!(letter.payload(), b"7");
    assert_eq!(
        letter.headers().get("sb-dead-letter-subject"),
        Some("orders.place")
    );
    let why = letter.headers().get("sb-dead-letter-error").unwrap();
    assert!(why.contains("max_age"), "{why}");
    wait_until_empty(&bus).await;
    assert_eq!(bus.outbox_stats().unwrap().expired, 1);
}

/// A full outbox refuses the send with `Overloaded`; nothing is dropped.
async fn a_full_outbox_refuses_sends() {
    let dir = tempfile::tempdir().unwrap();
    let bus = settings(&hub(), &dir.path().join("outbox.db"), "max_events = 5")
        .connect()
        .await
        .unwrap();
    send_numbered(&bus, 0..5).await;
    let err = bus
        .send::<_, ()>("orders.place", &5)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded, "{err}");
    assert_eq!(bus.outbox_stats().unwrap().pending, 5);
}

/// A store that cannot be opened, is not a database, or is held by another
/// bus: a clear error at start.
async fn bad_store_files_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    for (path, expected) in [
        (blocker.join("outbox.db"), "outbox store"),
        (corrupt.clone(), "not a database"),
    ] {
        let err = settings(&hub(), &path, "").connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(
            err.to_string().contains(expected),
            "{}: {err}",
            path.display()
        );
    }
    let held = dir.path().join("held.db");
    let first = settings(&hub(), &held, "").connect().await.unwrap();
    let err = settings(&hub(), &held, "").connect().await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    first.close().await.unwrap();
    // Closed, the file is free again and keeps what it held.
    let again = settings(&hub(), &held, "").connect().await.unwrap();
    again
        .publish("orders.place", Message::new("1"))
        .await
        .unwrap();
    again.close().await.unwrap();
}

/// Settings with `orders.place` async and deduplicated for `window` on
/// `hub`, with an outbox at `path` (`None`: no `[outbox]`).
fn dedup_settings(hub: &str, path: Option<&Path>, window: &str) -> Settings {
    let outbox = path.map_or(String::new(), |path| {
        format!("[outbox]\npath = \"{}\"\n", path.display())
    });
    Settings::from_toml(&format!(
        r#"
        [transports.default]
        url = "{hub}"

        [[routes]]
        subjects = "orders.place"
        style = "async"
        dedup = "{window}"

        {outbox}
        "#
    ))
    .unwrap()
}

/// Starts a deduplicating `orders` service; returns it and what it handles.
async fn dedup_service(
    bus: &Bus,
) -> (
    switchboard::service::RunningService,
    tokio::sync::mpsc::UnboundedReceiver<u32>,
) {
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let running = switchboard::Service::new("orders", bus.clone())
        .state(seen_tx)
        .on_ordered("orders.place", support::record)
        .start()
        .await
        .unwrap();
    (running, seen)
}

/// Publishes `n` with message id `id`.
async fn publish_with_id(bus: &Bus, n: u32, id: &str) {
    let message = Message::json(&n).unwrap().with_id(id);
    bus.publish("orders.place", message).await.unwrap();
}

/// A message id handled before the service (and its bus) restarted is
/// still known after it: the second delivery is skipped and counted.
async fn dedup_remembers_ids_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let hub = hub();
    let bus = dedup_settings(&hub, Some(&path), "10m")
        .connect()
        .await
        .unwrap();
    let (running, mut seen) = dedup_service(&bus).await;
    publish_with_id(&bus, 1, "order-1").await;
    assert_eq!(support::handled_until(&mut seen, 1).await, [1]);
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report}");
    bus.close().await.unwrap();

    let bus = dedup_settings(&hub, Some(&path), "10m")
        .connect()
        .await
        .unwrap();
    let (running, mut seen) = dedup_service(&bus).await;
    publish_with_id(&bus, 1, "order-1").await;
    publish_with_id(&bus, 2, "order-2").await;
    assert_eq!(support::handled_until(&mut seen, 2).await, [2]);
    let report = running.shutdown().await;
    assert_eq!(report.duplicates_skipped, 1, "{report}");
    bus.close().await.unwrap();
}

/// Two instances of one service on one bus share what they handled: a
/// copy of an id that goes to the other instance is skipped too. Ten ids,
/// each sent twice, spread over both by the queue group (one more id
/// between the rounds, so the copies go to the other instance where the
/// group takes turns): eleven handled, ten skipped.
async fn dedup_is_shared_by_instances_of_a_service_on_one_bus() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dedup_settings(&hub(), Some(&dir.path().join("outbox.db")), "10m")
        .connect()
        .await
        .unwrap();
    let (first, mut seen_first) = dedup_service(&bus).await;
    let (second, mut seen_second) = dedup_service(&bus).await;
    for n in 0..10 {
        publish_with_id(&bus, n, &format!("order-{n}")).await;
    }
    publish_with_id(&bus, 99, "order-99").await;
    for n in 0..10 {
        publish_with_id(&bus, n, &format!("order-{n}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_report = first.shutdown().await;
    let second_report = second.shutdown().await;
    let mut handled = Vec::new();
    while let Ok(n) = seen_first.try_recv() {
        handled.push(n);
    }
    while let Ok(n) = seen_second.try_recv() {
        handled.push(n);
    }
    handled.sort_unstable();
    let expected: Vec<u32> = (0..10).chain([99]).collect();
    assert_eq!(handled, expected, "each id handled once");
    assert_eq!(
        first_report.duplicates_skipped + second_report.duplicates_skipped,
        10,
        "{first_report} / {second_report}"
    );
    bus.close().await.unwrap();
}

/// Past its window an id is forgotten: the same id runs again.
async fn dedup_forgets_ids_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dedup_settings(&hub(), Some(&dir.path().join("outbox.db")), "300ms")
        .connect()
        .await
        .unwrap();
    let (running, mut seen) = dedup_service(&bus).await;
    publish_with_id(&bus, 1, "order-1").await;
    publish_with_id(&bus, 2, "order-1").await;
    publish_with_id(&bus, 3, "order-3").await;
    assert_eq!(support::handled_until(&mut seen, 3).await, [1, 3]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    publish_with_id(&bus, 4, "order-1").await;
    assert_eq!(support::handled_until(&mut seen, 4).await, [4]);
    let report = running.shutdown().await;
    assert_eq!(report.duplicates_skipped, 1, "{report}");
    bus.close().await.unwrap();
}

/// A route with `dedup` and no outbox to keep the ids: the service does not start.
async fn dedup_without_an_outbox_is_refused_at_start() {
    let bus = dedup_settings(&hub(), None, "10m").connect().await.unwrap();
    let err = switchboard::Service::new("orders", bus.clone())
        .on("orders.place", |_: u32| async {})
        .start()
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("[outbox]"), "{err}");
}

/// Receives numbered events on `subscription` until `count` came (10 s at most).
async fn numbers(
    subscription: &mut switchboard::transport::Subscription,
    count: usize,
) -> Vec<u32> {
    receive(subscription, count).await
}

/// A queue group seen before a restart is remembered in the file: after
/// the restart, while it is away and another group takes the events, they
/// are held for it and arrive when it returns.
async fn a_group_is_remembered_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let hub = hub();
    let members = switchboard::connect(&hub).await.unwrap();
    let mut audit = members
        .queue_subscribe("orders.place", "audit")
        .await
        .unwrap();
    let mut billing = members
        .queue_subscribe("orders.place", "billing")
        .await
        .unwrap();
    let bus = settings(&hub, &path, "").connect().await.unwrap();
    send_numbered(&bus, 0..1).await;
    assert_eq!(numbers(&mut audit, 1).await, [0]);
    assert_eq!(numbers(&mut billing, 1).await, [0]);
    wait_until_empty(&bus).await;
    bus.close().await.unwrap();
    drop(billing);

    let bus = settings(&hub, &path, "").connect().await.unwrap();
    send_numbered(&bus, 1..6).await;
    assert_eq!(numbers(&mut audit, 5).await, [1, 2, 3, 4, 5]);
    assert_eq!(bus.outbox_stats().unwrap().pending, 5, "held for billing");
    let mut billing = members
        .queue_subscribe("orders.place", "billing")
        .await
        .unwrap();
    assert_eq!(numbers(&mut billing, 5).await, [1, 2, 3, 4, 5]);
    wait_until_empty(&bus).await;
    assert!(
        support::next_within(&mut audit, Duration::from_millis(300))
            .await
            .is_none(),
        "audit got an event twice"
    );
    bus.close().await.unwrap();
}

/// A queue group not seen for `forget_after` is forgotten: what was held
/// for it is dead-lettered with the reason, and counted.
async fn a_forgotten_group_gets_its_events_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub();
    let members = switchboard::connect(&hub).await.unwrap();
    let mut audit = members
        .queue_subscribe("orders.place", "audit")
        .await
        .unwrap();
    let billing = members
        .queue_subscribe("orders.place", "billing")
        .await
        .unwrap();
    let bus = settings(
        &hub,
        &dir.path().join("outbox.db"),
        "forget_after = \"300ms\"",
    )
    .connect()
    .await
    .unwrap();
    let mut dead_letters = members.subscribe("dead-letter.outbox").await.unwrap();
    send_numbered(&bus, 0..1).await;
    assert_eq!(numbers(&mut audit, 1).await, [0]);
    drop(billing);
    send_numbered(&bus, 1..2).await;
    assert_eq!(numbers(&mut audit, 1).await, [1]);
    let letter = support::next_within(&mut dead_letters, Duration::from_secs(10))
        .await
        .expect("the event held for the forgotten group is dead-lettered");
    assert_eq!(letter.payload(), b"1");
    let why = letter.headers().get("sb-dead-letter-error").unwrap();
    assert!(
        why.contains("billing") && why.contains("forget_after"),
        "{why}"
    );
    wait_until_empty(&bus).await;
    assert_eq!(bus.outbox_stats().unwrap().expired, 1);
    bus.close().await.unwrap();
}

fn main() -> std::process::ExitCode {
    if let Ok(role) = std::env::var(ROLE) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(child(&role));
        return std::process::ExitCode::SUCCESS;
    }
    let arguments = libtest_mimic::Arguments::from_args();
    let trials = vec![
        libtest_mimic::Trial::test("a_service_away_gets_its_events_when_it_returns", || {
            support::run_trial(a_service_away_gets_its_events_when_it_returns).map(|_| ())
        }),
        libtest_mimic::Trial::test("a_sender_killed_mid_stream_loses_nothing", || {
            support::run_trial(a_sender_killed_mid_stream_loses_nothing).map(|_| ())
        }),
        libtest_mimic::Trial::test(
            "a_full_disk_refuses_the_send_and_keeps_what_was_accepted",
            || {
                support::run_trial(a_full_disk_refuses_the_send_and_keeps_what_was_accepted)
                    .map(|_| ())
            },
        ),
        libtest_mimic::Trial::test("an_event_nobody_takes_in_time_is_dead_lettered", || {
            support::run_trial(an_event_nobody_takes_in_time_is_dead_lettered).map(|_| ())
        }),
        libtest_mimic::Trial::test("a_full_outbox_refuses_sends", || {
            support::run_trial(a_full_outbox_refuses_sends).map(|_| ())
        }),
        libtest_mimic::Trial::test("bad_store_files_fail_at_start", || {
            support::run_trial(bad_store_files_fail_at_start).map(|_| ())
        }),
        libtest_mimic::Trial::test("a_group_is_remembered_across_a_restart", || {
            support::run_trial(a_group_is_remembered_across_a_restart).map(|_| ())
        }),
        libtest_mimic::Trial::test("a_forgotten_group_gets_its_events_dead_lettered", || {
            support::run_trial(a_forgotten_group_gets_its_events_dead_lettered).map(|_| ())
        }),
        libtest_mimic::Trial::test("dedup_remembers_ids_across_a_restart", || {
            support::run_trial(dedup_remembers_ids_across_a_restart).map(|_| ())
        }),
        libtest_mimic::Trial::test(
            "dedup_is_shared_by_instances_of_a_service_on_one_bus",
            || support::run_trial(dedup_is_shared_by_instances_of_a_service_on_one_bus).map(|_| ()),
        ),
        libtest_mimic::Trial::test("dedup_forgets_ids_after_its_window", || {
            support::run_trial(dedup_forgets_ids_after_its_window).map(|_| ())
        }),
        libtest_mimic::Trial::test("dedup_without_an_outbox_is_refused_at_start", || {
            support::run_trial(dedup_without_an_outbox_is_refused_at_start).map(|_| ())
        }),
    ];
    libtest_mimic::run(&arguments, trials).exit_code()
}
