//! Bad input on every backend CI runs: malformed JSON, the wrong schema, empty
//! and oversized payloads, invalid subjects and header values. Each gets a
//! clear, typed error, and the service keeps answering good input.

mod support;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{wire, Bus, ErrorKind, Message, Service};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    item: String,
    quantity: u32,
}

fn urls() -> Vec<String> {
    let mut urls = vec![format!("memory://{}", support::unique("bad"))];
    if cfg!(feature = "http") {
        urls.push("http://127.0.0.1:0".into());
    }
    if cfg!(feature = "nats") {
        urls.push(support::nats_url());
    }
    if cfg!(feature = "kafka") {
        urls.push(support::kafka_url());
    }
    urls
}

async fn expect_kind(bus: &Bus, subject: &str, message: Message, kind: ErrorKind, what: &str) {
    let err = bus
        .request_with_timeout(subject, message, Duration::from_secs(10))
        .await
        .expect_err(what);
    assert_eq!(err.kind(), kind, "{} {what}: {err}", bus.backend());
}

async fn bad_input_gets_typed_errors_and_disturbs_nothing() {
    for url in urls() {
        let Some(bus) = support::connect_or_skip(&url).await else {
            continue;
        };
        let name = support::unique("bad");
        let subject = format!("{name}.order");
        let events = format!("{name}.event");
        let mut letters = bus.subscribe(&format!("dead-letter.{name}")).await.unwrap();
        let (handled_tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
        let service = Service::new(name.clone(), bus.clone())
            .on(subject.clone(), |order: Order| async move {
                Ok::<_, String>(order.quantity * 2)
            })
            .on_ordered(events.clone(), move |order: Order| {
                let handled_tx = handled_tx.clone();
                async move { handled_tx.send(order).map_err(|e| e.to_string()) }
            })
            .start()
            .await
            .unwrap();

        // Payloads the handler never sees: each a codec error at the caller.
        for (payload, what) in [
            (&b"{not json"[..], "malformed JSON"),
            (&br#"{"item": 5}"#[..], "wrong schema"),
            (&b""[..], "empty payload"),
            (&[0xff, 0xfe, 0x00][..], "binary garbage"),
        ] {
            expect_kind(
                &bus,
                &subject,
                Message::new(payload.to_vec()),
                ErrorKind::Codec,
                what,
            )
            .await;
        }
        // Rejected before anything is sent.
        let limit = bus.capabilities().max_payload;
        expect_kind(
            &bus,
            &subject,
            Message::new(vec![b'x'; limit + 1]),
            ErrorKind::PayloadTooLarge,
            "oversized",
        )
        .await;
        expect_kind(
            &bus,
            &format!("{name}..order"),
            Message::new("{}"),
            ErrorKind::InvalidSubject,
            "empty token",
        )
        .await;
        expect_kind(
            &bus,
            &format!("{name}.or der"),
            Message::new("{}"),
            ErrorKind::InvalidSubject,
            "space",
        )
        .await;
        let header = Message::new("{}").with_header("x-note", "line\nbreak");
        expect_kind(
            &bus,
            &subject,
            header,
            ErrorKind::InvalidHeader,
            "newline in header",
        )
        .await;
        let reserved = Message::new("{}").with_header(wire::STATUS, "handler-error");
        expect_kind(
            &bus,
            &subject,
            reserved,
            ErrorKind::InvalidHeader,
            "reserved header",
        )
        .await;
        let err = bus
            .publish(&format!("{name}.>"), Message::new("{}"))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidSubject,
            "publish to a pattern"
        );

        // A malformed event goes straight to the dead-letter subject; the next one is handled.
        bus.publish(&events, Message::new("{oops")).await.unwrap();
        bus.publish_json(
            &events,
            &Order {
                item: "tea".into(),
                quantity: 1,
            },
        )
        .await
        .unwrap();
        let letter = support::next_within(&mut letters, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{url}: malformed event not dead-lettered"));
        assert_eq!(letter.payload(), b"{oops");
        assert_eq!(letter.headers().get(wire::DEAD_LETTER_ATTEMPTS), Some("1"));
        let good = tokio::time::timeout(Duration::from_secs(20), handled.recv())
            .await
            .expect("the good event after the bad one was handled")
            .unwrap();
        assert_eq!(good.item, "tea");

        // Nothing above disturbed the service.
        let doubled: u32 = bus
            .request_json(
                &subject,
                &Order {
                    item: "tea".into(),
                    quantity: 21,
                },
            )
            .await
            .unwrap();
        assert_eq!(doubled, 42, "{url}");
        service.shutdown().await;
        bus.close().await.unwrap();
        eprintln!("{url}: every bad input got its typed error; the service kept answering");
    }
}

/// The common failure of every error kind, each reached the way a user
/// reaches it, prints each prefix (`invalid configuration:`, `codec error:`,
/// `handler for`, …) at most once.
async fn error_texts_say_each_prefix_once() {
    use switchboard::{connect, handler::Rejection, Error, Settings};

    let dir = tempfile::tempdir().unwrap();
    let bad_style = dir.path().join("bad-style.toml");
    std::fs::write(&bad_style, "style = \"sometimes\"\n").unwrap();
    let bad_route = dir.path().join("bad-route.toml");
    std::fs::write(
        &bad_route,
        "[[routes]]\nsubjects = \"a..b\"\nstyle = \"async\"\n",
    )
    .unwrap();
    let load = |name: &'static str, value: String| {
        Settings::load_with("orders", move |key| (key == name).then(|| value.clone()))
            .expect_err("bad settings")
    };
    let mut errors: Vec<(&str, Error)> = vec![
        (
            "style variable",
            load("SWITCHBOARD_STYLE", "sometimes".into()),
        ),
        (
            "style in a file",
            load("SWITCHBOARD_CONFIG", bad_style.display().to_string()),
        ),
        (
            "route in a file",
            load("SWITCHBOARD_CONFIG", bad_route.display().to_string()),
        ),
        (
            "missing file",
            load("SWITCHBOARD_CONFIG", "/nonexistent/switchboard.toml".into()),
        ),
        ("malformed URL", connect("nats//x").await.unwrap_err()),
        (
            "unknown scheme",
            connect("carrier-pigeon://x").await.unwrap_err(),
        ),
        (
            "bad option",
            connect("memory://x?no_such_option=1").await.unwrap_err(),
        ),
    ];

    let bus = connect(&format!("memory://{}", support::unique("prefixes")))
        .await
        .unwrap();
    let service = Service::new("orders", bus.clone())
        .on("prefix.count", |n: u32| async move { Ok::<_, Rejection>(n) })
        .on("prefix.refuse", |_: u32| async move {
            Err::<u32, _>(Rejection::new("not today").with_code("closed"))
        })
        .state(bus.clone())
        .on(
            "prefix.pass-on",
            |n: u32, switchboard::handler::State(bus): switchboard::handler::State<Bus>| async move {
                let n: u32 = bus.request_json("prefix.refuse", &n).await?;
                Ok::<_, Rejection>(n)
            },
        )
        .on(
            "prefix.nobody",
            |n: u32, switchboard::handler::State(bus): switchboard::handler::State<Bus>| async move {
                let n: u32 = bus.request_json("prefix.unserved", &n).await?;
                Ok::<_, Rejection>(n)
            },
        )
        .start()
        .await
        .unwrap();
    let request = |subject: &'static str, payload: serde_json::Value| {
        let bus = bus.clone();
        async move {
            bus.request_json::<_, u32>(subject, &payload)
                .await
                .expect_err(subject)
        }
    };
    errors.push((
        "undecodable request",
        request("prefix.count", "x".into()).await,
    ));
    errors.push(("refusal", request("prefix.refuse", 1.into()).await));
    errors.push((
        "refusal passed on",
        request("prefix.pass-on", 1.into()).await,
    ));
    errors.push((
        "no responders passed on",
        request("prefix.nobody", 1.into()).await,
    ));
    errors.push(("no responders", request("prefix.unserved", 1.into()).await));
    let reply_mismatch = bus
        .request_json::<_, String>("prefix.count", &1)
        .await
        .unwrap_err();
    errors.push(("reply of the wrong type", reply_mismatch));
    errors.push((
        "invalid subject",
        bus.publish("a..b", Message::new("x")).await.unwrap_err(),
    ));
    let mut bad_header = Message::new("x");
    bad_header.headers.insert("bad name", "x");
    let header = bus.publish("prefix.count", bad_header).await;
    errors.push(("invalid header", header.unwrap_err()));
    service.shutdown().await;
    bus.close().await.unwrap();
    errors.push(("closed", request("prefix.count", 1.into()).await));

    let prefixes = [
        "invalid configuration:",
        "codec error:",
        "handler for",
        "cannot connect to",
        "invalid subject",
        "invalid header",
        "no responders for",
        "transport is closed",
        "unknown URL scheme",
    ];
    for (case, err) in &errors {
        let text = err.to_string();
        for prefix in prefixes {
            assert!(
                text.matches(prefix).count() <= 1,
                "{case}: `{prefix}` printed twice in: {text}"
            );
        }
        eprintln!("{case}: {text}");
    }
}

crate::tests!(
    bad_input_gets_typed_errors_and_disturbs_nothing,
    error_texts_say_each_prefix_once,
);
