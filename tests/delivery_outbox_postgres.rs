//! The outbox in PostgreSQL and transactional sends (`Bus::send_in`),
//! against a real server on loopback (`scripts/postgres-server.sh`; the URL
//! in `SWITCHBOARD_POSTGRES_URL`). Each test works in a database of its own.
//!
//! What is checked: `send_in` delivers after commit and never after a
//! rollback, on PostgreSQL and on the SQLite file; a sync route refuses it;
//! two processes sharing one database relay each event once, and the second
//! takes over when the first goes; a sender killed with SIGKILL loses
//! nothing it accepted; dedup ids live in the database; bad URLs and an
//! unreachable server are clear errors at start.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard::outbox::sqlx;
use switchboard::outbox::sqlx::Connection;
use switchboard::{Bus, ErrorKind, Message, Sent, Settings};

/// The server `scripts/postgres-server.sh` starts.
fn server_url() -> String {
    std::env::var("SWITCHBOARD_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://switchboard@127.0.0.1:25432/switchboard".to_owned())
}

/// A new, empty database for one test; its URL. Outside CI an unreachable
/// server skips the test (reported as ignored); under `CI=true` it fails.
async fn fresh_database() -> String {
    let url = server_url();
    let mut admin = match sqlx::PgConnection::connect(&url).await {
        Ok(connection) => connection,
        Err(err) if support::ci() => panic!("PostgreSQL at {url} is unreachable and CI=true: {err}"),
        Err(err) => support::skip(format!(
            "PostgreSQL at {url} is unreachable ({err}); start it with scripts/postgres-server.sh; with CI=true this fails"
        )),
    };
    let name = support::unique("sb").replace('-', "_");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn hub() -> String {
    format!("memory://{}", support::unique("pg-outbox"))
}

/// `orders.>` async and `queries.>` sync on `hub`, the outbox in `database`.
fn settings(hub: &str, database: &str, extra: &str) -> Settings {
    Settings::from_toml(&format!(
        r#"
        [transports.default]
        url = "{hub}"

        [[routes]]
        subjects = "orders.>"
        style = "async"

        [[routes]]
        subjects = "queries.>"
        style = "sync"

        [outbox]
        url = "{database}"
        {extra}
        "#
    ))
    .unwrap()
}

/// Receives JSON payloads until `count` arrived or 10 s passed.
async fn receive<T: serde::de::DeserializeOwned>(
    subscription: &mut switchboard::transport::Subscription,
    count: usize,
) -> Vec<T> {
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

async fn wait_until_empty(bus: &Bus) {
    for _ in 0..200 {
        if bus.outbox_stats().unwrap().pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox still holds {:?}", bus.outbox_stats());
}

/// An order row and its event commit together: 20 transactions, the odd
/// ones rolled back. Exactly the 10 committed events arrive, in order; the
/// table holds exactly their 10 rows.
async fn send_in_on_postgres_delivers_what_commits_and_nothing_that_rolls_back() {
    let database = fresh_database().await;
    let hub = hub();
    let bus = settings(&hub, &database, "").connect().await.unwrap();
    let mut orders = bus
        .queue_subscribe("orders.placed", "billing")
        .await
        .unwrap();
    let pool = bus.outbox_postgres().expect("a PostgreSQL outbox");
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    for n in 0..20u32 {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id) VALUES ($1)")
            .bind(n as i32)
            .execute(&mut *tx)
            .await
            .unwrap();
        let id = bus.send_in(&mut *tx, "orders.placed", &n).await.unwrap();
        assert_eq!(id.len(), 32, "a message id: {id}");
        if n % 2 == 0 {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    let got: Vec<u32> = receive(&mut orders, 10).await;
    assert_eq!(got, (0..20).step_by(2).collect::<Vec<_>>());
    assert!(
        support::next_within(&mut orders, Duration::from_millis(500))
            .await
            .is_none(),
        "a rolled-back send or a duplicate arrived"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 10);
    wait_until_empty(&bus).await;
    bus.close().await.unwrap();
}

/// The same on the SQLite file: the caller's table lives in the outbox's
/// file, and its transaction is on the outbox's connection.
async fn send_in_on_sqlite_delivers_what_commits_and_nothing_that_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Settings::from_toml(&format!(
        "[transports.default]\nurl = \"{}\"\n[[routes]]\nsubjects = \"orders.>\"\nstyle = \"async\"\n[outbox]\npath = \"{}\"\n",
        hub(),
        dir.path().join("outbox.db").display()
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    assert!(bus.outbox_postgres().is_none());
    let mut orders = bus
        .queue_subscribe("orders.placed", "billing")
        .await
        .unwrap();
    let pool = bus.outbox_sqlite().expect("an SQLite outbox");
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    for n in 0..20u32 {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id) VALUES (?)")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        bus.send_in(&mut *tx, "orders.placed", &n).await.unwrap();
        if n % 2 == 0 {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    let got: Vec<u32> = receive(&mut orders, 10).await;
    assert_eq!(got, (0..20).step_by(2).collect::<Vec<_>>());
    assert!(
        support::next_within(&mut orders, Duration::from_millis(500))
            .await
            .is_none(),
        "a rolled-back send or a duplicate arrived"
    );
    wait_until_empty(&bus).await;

    // A connection to another SQLite file would write where no relay reads.
    let mut other = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    let err = bus
        .send_in(&mut other, "orders.placed", &1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("outbox_sqlite"), "{err}");
    bus.close().await.unwrap();
}

/// A sync route's caller waits for a reply: `send_in` refuses it, saying
/// what to change; without an outbox there is nowhere to write.
async fn send_in_refuses_a_sync_route_and_a_bus_without_an_outbox() {
    let database = fresh_database().await;
    let bus = settings(&hub(), &database, "").connect().await.unwrap();
    let pool = bus.outbox_postgres().unwrap();
    let mut tx = pool.begin().await.unwrap();
    let err = bus
        .send_in(&mut *tx, "queries.price", &1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("fallback"), "{err}");
    tx.rollback().await.unwrap();
    bus.close().await.unwrap();

    let plain = switchboard::connect(&hub()).await.unwrap();
    let mut connection = sqlx::PgConnection::connect(&database).await.unwrap();
    let err = plain
        .send_in(&mut connection, "orders.placed", &1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
}

/// Two processes' buses share one database, each sending 100 orders at
/// once: each order is delivered once (two relays would deliver each
/// twice). The first closes; the second takes over the relay within a
/// second and delivers its next 100. Nothing lost, nothing twice, each
/// sender's orders in its order.
async fn two_buses_share_a_postgres_outbox_and_the_second_takes_over() {
    let database = fresh_database().await;
    let hub = hub();
    let first = settings(&hub, &database, "").connect().await.unwrap();
    let second = settings(&hub, &database, "").connect().await.unwrap();
    let receiver = switchboard::connect(&hub).await.unwrap();
    let mut orders = receiver
        .queue_subscribe("orders.placed", "billing")
        .await
        .unwrap();
    let send = |bus: Bus, who: &'static str, range: std::ops::Range<u32>| async move {
        for n in range {
            let sent: Sent<()> = bus.send("orders.placed", &(who, n)).await.unwrap();
            assert!(sent.is_accepted());
        }
    };
    tokio::join!(
        send(first.clone(), "first", 0..100),
        send(second.clone(), "second", 0..100)
    );
    let mut got: Vec<(String, u32)> = receive(&mut orders, 200).await;
    wait_until_empty(&first).await;
    first.close().await.unwrap();
    send(second.clone(), "second", 100..200).await;
    got.extend(receive::<(String, u32)>(&mut orders, 100).await);
    assert!(
        support::next_within(&mut orders, Duration::from_millis(500))
            .await
            .is_none(),
        "a duplicate arrived"
    );
    let mut per_sender: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (who, n) in &got {
        per_sender.entry(who.clone()).or_default().push(*n);
    }
    let distinct: BTreeSet<&(String, u32)> = got.iter().collect();
    eprintln!(
        "received {} ({} distinct): first {}, second {}",
        got.len(),
        distinct.len(),
        per_sender.get("first").map_or(0, Vec::len),
        per_sender.get("second").map_or(0, Vec::len)
    );
    assert_eq!(got.len() - distinct.len(), 0, "duplicates");
    assert_eq!(
        per_sender["first"],
        (0..100).collect::<Vec<_>>(),
        "lost or out of order"
    );
    assert_eq!(
        per_sender["second"],
        (0..200).collect::<Vec<_>>(),
        "lost or out of order"
    );
    wait_until_empty(&second).await;
    second.close().await.unwrap();
}

const ROLE: &str = "SB_PG_OUTBOX_TEST_ROLE";
const DATABASE: &str = "SB_PG_OUTBOX_TEST_DATABASE";

/// The child process: accepts numbered orders forever on a hub nobody
/// listens on, printing each number once accepted.
async fn child() {
    let bus = settings(&hub(), &std::env::var(DATABASE).unwrap(), "")
        .connect()
        .await
        .unwrap();
    let mut out = std::io::stdout();
    for n in 0u32.. {
        let sent: Sent<()> = bus.send("orders.placed", &n).await.unwrap();
        assert!(sent.is_accepted());
        writeln!(out, "{n}").unwrap();
        out.flush().unwrap();
    }
}

/// A sender killed with SIGKILL mid-stream: everything it had accepted is
/// in the database, and the next bus delivers it, in order, once each.
async fn a_sender_killed_mid_stream_loses_nothing_on_postgres() {
    let database = fresh_database().await;
    let mut sender = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "send")
        .env(DATABASE, &database)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut accepted = BTreeSet::new();
    for line in BufReader::new(sender.stdout.take().unwrap()).lines() {
        accepted.insert(line.unwrap().parse::<u32>().unwrap());
        if accepted.len() == 300 {
            break;
        }
    }
    sender.kill().unwrap();
    sender.wait().unwrap();
    let hub = hub();
    let receiver = switchboard::connect(&hub).await.unwrap();
    let mut orders = receiver
        .queue_subscribe("orders.placed", "billing")
        .await
        .unwrap();
    let bus = settings(&hub, &database, "").connect().await.unwrap();
    let mut received: Vec<u32> = Vec::new();
    while let Some(incoming) = support::next_within(&mut orders, Duration::from_secs(3)).await {
        received.push(serde_json::from_slice(incoming.payload()).unwrap());
    }
    let distinct: BTreeSet<u32> = received.iter().copied().collect();
    let lost: Vec<&u32> = accepted.difference(&distinct).collect();
    let duplicates = received.len() - distinct.len();
    eprintln!(
        "killed after {} accepted sends; the next bus delivered {} ({} distinct, {duplicates} duplicates)",
        accepted.len(),
        received.len(),
        distinct.len()
    );
    assert!(lost.is_empty(), "accepted sends lost: {lost:?}");
    assert_eq!(duplicates, 0);
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(received, sorted, "held events arrive in send order");
    bus.close().await.unwrap();
}

/// A route with `dedup` keeps its handled ids in the database: an id
/// handled before the service (and its bus) restarted is skipped after it,
/// and counted.
async fn dedup_on_postgres_remembers_ids_across_a_restart() {
    let database = fresh_database().await;
    let hub = hub();
    let config = Settings::from_toml(&format!(
        "[transports.default]\nurl = \"{hub}\"\n[[routes]]\nsubjects = \"orders.>\"\nstyle = \"async\"\ndedup = \"10m\"\n[outbox]\nurl = \"{database}\"\n"
    ))
    .unwrap();
    let publish = |bus: Bus, n: u32| async move {
        let message = Message::json(&n).unwrap().with_id(format!("order-{n}"));
        bus.publish("orders.placed", message).await.unwrap();
    };
    let mut skipped = Vec::new();
    for round in [vec![1], vec![1, 2]] {
        let bus = config.connect().await.unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let running = switchboard::Service::new("billing", bus.clone())
            .state(seen_tx)
            .on_ordered("orders.placed", support::record)
            .start()
            .await
            .unwrap();
        for n in &round {
            publish(bus.clone(), *n).await;
        }
        let last = *round.last().unwrap();
        let handled = support::handled_until(&mut seen, last).await;
        assert_eq!(handled, [last], "round {round:?}");
        let report = running.shutdown().await;
        skipped.push(report.duplicates_skipped);
        bus.close().await.unwrap();
    }
    assert_eq!(skipped, [0, 1]);
}

/// A malformed URL, an unreachable server and both `path` and `url` fail
/// at start, each saying what is wrong, with no password in the message.
async fn bad_postgres_settings_fail_at_start() {
    let hub = hub();
    let err = settings(&hub, "postgres://u:secret@127.0.0.1:notaport/db", "")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    // A port nothing listens on (loopback only).
    let err = settings(&hub, "postgres://u:secret@127.0.0.1:1/db", "")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains("outbox database"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = settings(&hub, "postgres://u@127.0.0.1:1/db", "path = \"x.db\"")
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("both a `path` and a `url`"),
        "{err}"
    );
}

fn main() -> std::process::ExitCode {
    if std::env::var(ROLE).is_ok() {
        tokio::runtime::Runtime::new().unwrap().block_on(child());
        return std::process::ExitCode::SUCCESS;
    }
    run()
}

mod harness {
    use super::*;
    crate::tests!(
        send_in_on_postgres_delivers_what_commits_and_nothing_that_rolls_back,
        send_in_on_sqlite_delivers_what_commits_and_nothing_that_rolls_back,
        send_in_refuses_a_sync_route_and_a_bus_without_an_outbox,
        two_buses_share_a_postgres_outbox_and_the_second_takes_over,
        a_sender_killed_mid_stream_loses_nothing_on_postgres,
        dedup_on_postgres_remembers_ids_across_a_restart,
        bad_postgres_settings_fail_at_start,
    );
    pub(super) fn run() -> std::process::ExitCode {
        main()
    }
}
use harness::run;
