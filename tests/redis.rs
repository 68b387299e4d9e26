//! Redis Streams behaviour beyond the conformance suite: bad URLs and
//! credentials, forged and garbled requests, a group's place kept while the
//! group is away, a crashed member's events claimed by another, stream
//! entries written by other clients, trimming, a message over the server's
//! limit, and TLS. Needs Redis on 127.0.0.1:6379
//! (`scripts/redis-server.sh start`); without it these tests are skipped
//! with a message, unless `CI=true`, where they fail.

use std::time::Duration;

use switchboard::redis::redis;
use switchboard::{connect, Bus, ErrorKind, Message, Service};

mod support;
use support::certs::TestPki;
use support::cut_proxy::{lost_ack_is_reported, CutProxy};
use support::redis::PrivateRedis;
use support::{answer_once_recovered, connect_or_skip, next_within, unique};

const SERVER: &str = "redis://127.0.0.1:6379";
const WITHIN: Duration = Duration::from_secs(10);

async fn server(options: &str) -> Option<Bus> {
    connect_or_skip(&format!("{SERVER}{options}")).await
}

/// A raw connection to the test server.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(SERVER)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A misspelt option is refused with the right name suggested; a malformed
/// value, a second host and a database that is not a number with the reason.
async fn bad_urls_are_refused_with_a_reason() {
    for (url, expected) in [
        ("redis://127.0.0.1:6379?prefech=8", "prefetch"),
        ("redis://127.0.0.1:6379?claim_idle=soon", "claim_idle"),
        ("redis://a:6379,b:6379", "one server"),
        ("redis://127.0.0.1:6379/orders", "database number"),
        ("redis://127.0.0.1:6379?prefix=a:b", "prefix"),
    ] {
        let err = connect(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{url}: {err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
}

/// A server that refuses the credentials is a connect error that does not
/// show the password.
async fn refused_credentials_are_a_connect_error() {
    let Some(reachable) = server("").await else {
        return;
    };
    reachable.close().await.unwrap();
    let err = connect("redis://nobody:not-the-password@127.0.0.1:6379")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

/// Garbage on the request channel, requests without a reply address, and
/// requests whose reply address is not a reply channel (a forged address
/// pointing the answer at another subject's requests) are dropped or
/// refused; the responder goes on answering real requests, and nothing is
/// published where the forged address pointed.
async fn forged_and_garbled_requests_do_not_stop_a_responder() {
    let Some(bus) = server("").await else {
        return;
    };
    let subject = unique("forged");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on_ordered(&subject, move |n: u32| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move { Ok::<_, String>(n + 1) }
        })
        .start()
        .await
        .unwrap();
    let victim = unique("victim");
    let mut victim_requests = bus.subscribe(&victim).await.unwrap();
    let mut connection = raw().await;
    let channel = format!("switchboard:req:{subject}");
    let frame = |headers: &[(&str, &str)], payload: &[u8]| {
        let mut out = b"SBR1".to_vec();
        out.extend((headers.len() as u16).to_be_bytes());
        for (name, value) in headers {
            out.extend((name.len() as u16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((value.len() as u32).to_be_bytes());
            out.extend(value.as_bytes());
        }
        out.extend(payload);
        out
    };
    let victim_channel = format!("switchboard:req:{victim}");
    let hostile: Vec<Vec<u8>> = vec![
        b"not a frame".to_vec(),
        b"SBR1\xff\xff".to_vec(),
        frame(&[], b"7"),
        frame(
            &[
                ("sb-reply-to", victim_channel.as_str()),
                ("sb-correlation-id", "1"),
            ],
            b"7",
        ),
        frame(&[("sb-reply-to", ""), ("sb-correlation-id", "2")], b"7"),
    ];
    for payload in hostile {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let answer: u32 = bus
        .request_json_with_timeout(&subject, &41, WITHIN)
        .await
        .unwrap();
    assert_eq!(answer, 42);
    assert!(
        next_within(&mut victim_requests, Duration::from_millis(300))
            .await
            .is_none(),
        "a forged reply address made the responder publish elsewhere"
    );
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// Every member of a group receives each request over pub/sub; the claim
/// lets exactly one of them run its handler: 60 requests to three members
/// run 60 handlers, and more than one member takes part.
async fn a_request_to_a_group_is_handled_once() {
    let Some(caller) = server("").await else {
        return;
    };
    let subject = unique("claimed-requests");
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut running = Vec::new();
    for member in 0..3u32 {
        let bus = server("").await.unwrap();
        let calls = calls.clone();
        running.push(
            Service::new("claimers", bus)
                .on(&subject, move |n: u32| {
                    calls.lock().unwrap().push((member, n));
                    async move { Ok::<_, String>(n) }
                })
                .start()
                .await
                .unwrap(),
        );
    }
    for n in 0..60u32 {
        let answer: u32 = caller
            .request_json_with_timeout(&subject, &n, WITHIN)
            .await
            .unwrap();
        assert_eq!(answer, n);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = calls.lock().unwrap().clone();
    let mut handled: Vec<u32> = calls.iter().map(|(_, n)| *n).collect();
    handled.sort_unstable();
    assert_eq!(
        handled,
        (0..60).collect::<Vec<_>>(),
        "a request ran twice or never"
    );
    let members: std::collections::BTreeSet<u32> = calls.iter().map(|(m, _)| *m).collect();
    assert!(
        members.len() > 1,
        "one member took every request: {members:?}"
    );
    for service in running {
        service.shutdown().await;
    }
    caller.close().await.unwrap();
}

/// A group new to a stream reads it from its first entry: events
/// published before any group existed reach it, once each; with
/// `group_start=latest` a new group starts at the moment of subscribing.
async fn a_new_group_starts_at_the_first_entry() {
    let Some(bus) = server("").await else {
        return;
    };
    let subject = unique("before-any-group");
    for n in 0..5u32 {
        bus.publish_json(&subject, &n).await.unwrap();
    }
    let mut first = bus.queue_subscribe(&subject, "early").await.unwrap();
    let mut seen = Vec::new();
    while let Some(mut incoming) = next_within(&mut first, Duration::from_secs(1)).await {
        seen.push(incoming.decode_json::<u32>().unwrap());
        incoming.ack().await.unwrap();
    }
    assert_eq!(seen, (0..5).collect::<Vec<_>>());
    let latest = server("?group_start=latest").await.unwrap();
    let mut late = latest.queue_subscribe(&subject, "late").await.unwrap();
    bus.publish_json(&subject, &5u32).await.unwrap();
    let only = next_within(&mut late, WITHIN).await.unwrap();
    assert_eq!(only.decode_json::<u32>().unwrap(), 5);
    assert!(next_within(&mut late, Duration::from_millis(500))
        .await
        .is_none());
    bus.close().await.unwrap();
    latest.close().await.unwrap();
}

/// A group's place in the stream is kept while every member is away: the
/// group gets every event published meanwhile, once each, when a member
/// is back.
async fn a_group_keeps_its_place_while_the_group_is_away() {
    let Some(publisher) = server("").await else {
        return;
    };
    let subject = unique("away");
    let member = server("").await.unwrap();
    let first = member.queue_subscribe(&subject, "billing").await.unwrap();
    drop(first);
    for n in 0..50u32 {
        publisher.publish_json(&subject, &n).await.unwrap();
    }
    let mut back = member.queue_subscribe(&subject, "billing").await.unwrap();
    let mut seen = Vec::new();
    while let Some(mut incoming) = next_within(&mut back, Duration::from_secs(2)).await {
        seen.push(incoming.decode_json::<u32>().unwrap());
        incoming.ack().await.unwrap();
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "lost or repeated events");
    publisher.close().await.unwrap();
    member.close().await.unwrap();
}

/// Events a member took and neither acknowledged nor returned (it
/// crashed) are claimed by another member after `claim_idle`, once each;
/// a nacked event comes back at once.
async fn a_crashed_members_events_are_claimed_by_another() {
    let Some(publisher) = server("").await else {
        return;
    };
    let subject = unique("claimed");
    let crashing = server("?claim_idle=300ms").await.unwrap();
    let mut taken = crashing.queue_subscribe(&subject, "claims").await.unwrap();
    for n in 0..20u32 {
        publisher.publish_json(&subject, &n).await.unwrap();
    }
    let mut held = Vec::new();
    while held.len() < 20 {
        held.push(next_within(&mut taken, WITHIN).await.expect("taken"));
    }
    // Gone without a word: nothing acknowledged.
    drop(held);
    drop(taken);
    crashing.close().await.unwrap();
    let survivor = server("?claim_idle=300ms").await.unwrap();
    let mut claims = survivor.queue_subscribe(&subject, "claims").await.unwrap();
    let mut seen = Vec::new();
    let mut nacked_once = false;
    while let Some(mut incoming) = next_within(&mut claims, Duration::from_secs(3)).await {
        let n = incoming.decode_json::<u32>().unwrap();
        if n == 7 && !nacked_once {
            nacked_once = true;
            incoming.nack().await.unwrap();
            continue;
        }
        seen.push(n);
        incoming.ack().await.unwrap();
    }
    seen.sort_unstable();
    assert!(nacked_once, "event 7 never came");
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "lost or repeated events after the claim"
    );
    publisher.close().await.unwrap();
    survivor.close().await.unwrap();
}

/// Entries another client adds with `XADD` read as messages: `payload` is
/// the payload, `h:NAME` fields are headers; fields that are not headers
/// switchboard could send (binary names and values, control characters)
/// are left out, and an entry without `payload` is an empty payload.
async fn foreign_stream_entries_read_as_messages() {
    let Some(bus) = server("").await else {
        return;
    };
    let subject = unique("foreign");
    let mut subscription = bus.subscribe(&subject).await.unwrap();
    let mut connection = raw().await;
    let key = format!("switchboard:{subject}");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("payload")
        .arg("{}")
        .arg("h:x-name")
        .arg("ada")
        .arg("h:content-type")
        .arg("application/json")
        .arg("h:x-control")
        .arg("a\r\nb")
        .arg(&b"h:\xff\xfe"[..])
        .arg("v")
        .arg("other")
        .arg("ignored")
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("h:x-only")
        .arg("header")
        .query_async(&mut connection)
        .await
        .unwrap();
    let incoming = next_within(&mut subscription, WITHIN).await.unwrap();
    assert_eq!(incoming.payload(), b"{}");
    let headers = incoming.headers();
    assert_eq!(headers.get("x-name"), Some("ada"));
    assert_eq!(headers.get("content-type"), Some("application/json"));
    assert_eq!(headers.get("x-control"), None);
    assert_eq!(headers.len(), 2, "{headers:?}");
    let empty = next_within(&mut subscription, WITHIN).await.unwrap();
    assert_eq!(empty.payload(), b"");
    assert_eq!(empty.headers().get("x-only"), Some("header"));
    bus.close().await.unwrap();
}

/// `maxlen` trims a stream as it grows (approximately, as `XADD MAXLEN ~`
/// does: whole nodes of entries at a time).
async fn maxlen_trims_streams() {
    let Some(bus) = server("?maxlen=100").await else {
        return;
    };
    let subject = unique("trimmed");
    for n in 0..1000u32 {
        bus.publish_json(&subject, &n).await.unwrap();
    }
    let length: u64 = redis::cmd("XLEN")
        .arg(format!("switchboard:{subject}"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!((100..=300).contains(&length), "stream length {length}");
    bus.close().await.unwrap();
}

/// A message over the server's own limit (`proto-max-bulk-len`, 32 MiB on
/// the test server, below this client's `max_payload`) is refused; the
/// connection comes back and the next publish and request go out.
async fn a_message_over_the_servers_limit_is_an_error_and_the_next_goes_out() {
    let Some(bus) = server("?max_payload=67108864").await else {
        return;
    };
    let subject = unique("oversized");
    let running = Service::new(format!("{subject}-svc"), bus.clone())
        .on(&subject, |n: u32| async move { Ok::<_, String>(n + 1) })
        .start()
        .await
        .unwrap();
    let events_subject = format!("{subject}.events");
    let mut events = bus.subscribe(&events_subject).await.unwrap();
    let huge = Message::new(vec![b'x'; 33 * 1024 * 1024]);
    let err = bus
        .publish(&events_subject, huge.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout),
        "{err}"
    );
    let deadline = std::time::Instant::now() + WITHIN;
    while let Err(err) = bus.publish(&events_subject, Message::new("small")).await {
        assert!(
            std::time::Instant::now() < deadline,
            "publishing did not recover: {err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = next_within(&mut events, WITHIN).await.unwrap();
    assert_eq!(event.payload(), b"small");
    let answer = answer_once_recovered(&bus, &subject, &[], WITHIN).await;
    assert_eq!(answer, 2);
    running.shutdown().await;
    bus.close().await.unwrap();
}

/// `rediss://` against a private server with only a TLS listener: a
/// request and an event cross it with the test CA given as `tls_ca`; a CA
/// that did not sign the server's certificate and a plain `redis://`
/// connection to the TLS port are clear connect errors.
async fn requests_and_events_cross_tls_and_strangers_are_refused() {
    let pki = TestPki::generate();
    let Some(server) = PrivateRedis::start(|server| {
        vec![
            "--tls-port".into(),
            server.tls_port.to_string(),
            "--tls-cert-file".into(),
            pki.file("cert.pem"),
            "--tls-key-file".into(),
            pki.file("key.pem"),
            "--tls-ca-cert-file".into(),
            pki.file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }) else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", server.tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no TLS listener");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!(
        "rediss://localhost:{}?tls_ca={}",
        server.tls_port,
        pki.file("ca.pem")
    );
    let bus = connect(&url).await.unwrap();
    let running = Service::new("tls-echo", bus.clone())
        .on(
            "tls.echo",
            |text: String| async move { Ok::<_, String>(text) },
        )
        .start()
        .await
        .unwrap();
    let answer: String = bus.request_json("tls.echo", "over TLS").await.unwrap();
    assert_eq!(answer, "over TLS");
    let mut events = bus.subscribe("tls.event").await.unwrap();
    bus.publish("tls.event", Message::new("sealed"))
        .await
        .unwrap();
    let event = next_within(&mut events, WITHIN).await.unwrap();
    assert_eq!(event.payload(), b"sealed");
    running.shutdown().await;
    bus.close().await.unwrap();

    let stranger = format!(
        "rediss://localhost:{}?tls_ca={}&connect_timeout=3s",
        server.tls_port,
        pki.file("other-ca.pem")
    );
    let err = connect(&stranger).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let plain = format!("redis://127.0.0.1:{}?connect_timeout=3s", server.tls_port);
    let err = connect(&plain).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
}

/// An event whose `XACK` could not be sent (its connection dropped while
/// the handler ran) stays pending, is claimed again after `claim_idle`, and
/// the shutdown report counts it as unacknowledged.
async fn an_ack_lost_with_the_connection_is_in_the_shutdown_report() {
    let Some(publisher) = server("?claim_idle=300ms").await else {
        return;
    };
    let proxy = CutProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let bus = connect(&format!("redis://{}?claim_idle=300ms", proxy.addr))
        .await
        .unwrap();
    lost_ack_is_reported(&publisher, &bus, &proxy, &unique("unacked"), WITHIN).await;
    bus.close().await.unwrap();
    publisher.close().await.unwrap();
}

crate::tests!(
    an_ack_lost_with_the_connection_is_in_the_shutdown_report,
    bad_urls_are_refused_with_a_reason,
    refused_credentials_are_a_connect_error,
    forged_and_garbled_requests_do_not_stop_a_responder,
    a_group_keeps_its_place_while_the_group_is_away,
    a_request_to_a_group_is_handled_once,
    a_new_group_starts_at_the_first_entry,
    a_crashed_members_events_are_claimed_by_another,
    foreign_stream_entries_read_as_messages,
    maxlen_trims_streams,
    a_message_over_the_servers_limit_is_an_error_and_the_next_goes_out,
    requests_and_events_cross_tls_and_strangers_are_refused,
);
