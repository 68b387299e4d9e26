//! Publishing to nobody is visible: on the backends that know their
//! subscribers (memory, HTTP, gRPC) an event that reaches no subscriber is
//! counted and shown in health, and a route with `on_no_subscriber = "error"`
//! fails the send with `NoResponders` instead of accepting it.

mod support;

use std::time::Duration;

use switchboard::transport::Health;
use switchboard::{Bus, ErrorKind, Message, Sent, Settings};

const ROUTES: &str = r#"
    [[routes]]
    subjects = "orders.place"
    style = "async"
    on_no_subscriber = "error"

    [[routes]]
    subjects = "audit.*"
    style = "async"
"#;

async fn bus(url: &str) -> Bus {
    let toml = format!("{ROUTES}\n[transports.default]\nurl = \"{url}\"\n");
    Settings::from_toml(&toml).unwrap().connect().await.unwrap()
}

/// One bus alone: nobody subscribes, then someone does.
async fn events_to_nobody_are_counted_or_refused(url: &str) {
    let bus = bus(url).await;
    assert_eq!(bus.health(), Health::Connected);

    // `error`: the caller hears that nobody took it.
    let err = bus
        .send::<_, ()>("orders.place", &"tea")
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{url}: {err}");
    assert_eq!(bus.unrouted_total(), 1, "{url}");

    // `count` (the default): accepted, counted, and health says so.
    bus.publish("audit.login", Message::new("ada"))
        .await
        .unwrap();
    assert_eq!(bus.unrouted_total(), 2, "{url}");
    match bus.health() {
        Health::Degraded(why) => assert!(
            why.contains("`orders.place`") && why.contains("`audit.login`"),
            "{url}: {why}"
        ),
        other => panic!("{url}: health {other:?} after events reached nobody"),
    }

    // With a subscriber both go through and nothing more is counted.
    let mut orders = bus.subscribe("orders.place").await.unwrap();
    let mut audit = bus.subscribe("audit.*").await.unwrap();
    let sent: Sent<()> = bus.send("orders.place", &"tea").await.unwrap();
    assert!(sent.is_accepted(), "{url}");
    bus.publish("audit.login", Message::new("ada"))
        .await
        .unwrap();
    for (subscription, payload) in [(&mut orders, &br#""tea""#[..]), (&mut audit, b"ada")] {
        let got = support::next_within(subscription, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{url}: the event did not arrive"));
        assert_eq!(got.payload(), payload, "{url}");
    }
    assert_eq!(bus.unrouted_total(), 2, "{url}");
    bus.close().await.unwrap();
}

async fn memory() {
    events_to_nobody_are_counted_or_refused(&format!("memory://{}", support::unique("unrouted")))
        .await;
}

#[cfg(feature = "http")]
async fn http() {
    events_to_nobody_are_counted_or_refused("http://127.0.0.1:0").await;
}

#[cfg(feature = "grpc")]
async fn grpc() {
    events_to_nobody_are_counted_or_refused("grpc://127.0.0.1:0").await;
}

/// Across a mesh: a subscriber in another service counts as someone, one
/// that nobody runs does not.
#[cfg(feature = "http")]
async fn a_peer_subscriber_counts_on_a_mesh() {
    for scheme in ["http", "grpc"] {
        if scheme == "grpc" && !cfg!(feature = "grpc") {
            continue;
        }
        let receiver = switchboard::connect(&format!("{scheme}://127.0.0.1:0"))
            .await
            .unwrap();
        let mut orders = receiver.subscribe("orders.place").await.unwrap();
        let seed = receiver.local_address().unwrap();
        let sender = bus(&format!("{scheme}://127.0.0.1:0?peers={scheme}://{seed}")).await;
        let sent: Sent<()> = sender.send("orders.place", &"tea").await.unwrap();
        assert!(sent.is_accepted(), "{scheme}");
        let got = support::next_within(&mut orders, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{scheme}: the event did not arrive"));
        assert_eq!(got.payload(), br#""tea""#);
        let err = sender.publish("audit.login", Message::new("ada")).await;
        assert!(err.is_ok(), "{scheme}: {err:?}");
        assert_eq!(
            sender.unrouted_total(),
            1,
            "{scheme}: audit.login reached nobody"
        );
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
    }
}

crate::tests!(
    memory,
    #[cfg(feature = "http")]
    http,
    #[cfg(feature = "grpc")]
    grpc,
    #[cfg(feature = "http")]
    a_peer_subscriber_counts_on_a_mesh,
);
