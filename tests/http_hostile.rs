//! The HTTP server against hostile clients (issue 14, holes 1–4 and 6): forged
//! peer snapshots, silent and slow connections, a connection flood, huge
//! declared bodies, and the documented shape of every error. Raw sockets and
//! reqwest on 127.0.0.1 only; every wait is bounded.
#![cfg(feature = "http")]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::{connect, Bus, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(bus: &Bus) -> std::net::SocketAddr {
    bus.local_address().unwrap()
}

async fn service(options: &str) -> Bus {
    connect(&format!("http://127.0.0.1:0?{options}"))
        .await
        .unwrap()
}

/// Answers every request on `subject` with its own payload, in a task of its own.
async fn echo_replies(bus: &Bus, subject: &str) {
    let mut requests = bus.subscribe(subject).await.unwrap();
    tokio::spawn(async move {
        while let Some(mut request) = requests.next().await {
            let payload = request.payload().to_vec();
            let _ = request.reply(Message::new(payload)).await;
        }
    });
}

/// Reads until the server closes the connection (or `within` passes): what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn snapshot_of(bus: &Bus) -> Value {
    reqwest::get(format!(
        "http://{}/_switchboard/subscriptions",
        address(bus)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

fn forged(service: &str, peers: &[&str]) -> Value {
    json!({
        "service": service,
        "incarnation": 1,
        "generation": 1,
        "subscriptions": [{ "subject": ">" }],
        "peers": peers,
    })
}

/// Hole 1: without a token, a stranger cannot make a service learn an address
/// of its choosing, nor pass one on; it may only announce itself.
#[tokio::test]
async fn forged_snapshots_cannot_point_the_mesh_elsewhere() {
    let bus = service("").await;
    let exchange = format!("http://{}/_switchboard/subscriptions", address(&bus));
    let client = reqwest::Client::new();

    for claimed in [
        "http://10.9.9.9:80",
        "not a url at all",
        "http://127.0.0.1:1/steal",
    ] {
        let refused = client
            .post(&exchange)
            .json(&forged(claimed, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{claimed}");
        assert_eq!(refused.headers()["sb-status"], "forbidden");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["status"], "forbidden", "{body}");
    }

    // Announcing its own address works, but the peers it lists are not learned.
    let own = "http://127.0.0.1:9";
    let accepted = client
        .post(&exchange)
        .json(&forged(own, &["http://10.9.9.9:80", "not a url at all"]))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(snapshot_of(&bus).await["peers"], json!([own]));

    let garbage = client.post(&exchange).body("{").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(garbage.headers()["sb-status"], "codec-error");

    // With `join=configured`, not even that.
    let strict = service("join=configured").await;
    let refused = client
        .post(format!(
            "http://{}/_switchboard/subscriptions",
            address(&strict)
        ))
        .json(&forged(own, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(snapshot_of(&strict).await["peers"], json!([]));
}

/// Hole 1, the mesh still forms: a seed learns newcomers that announce
/// themselves, and newcomers learn each other through the seed.
#[tokio::test]
async fn services_still_learn_each_other_through_a_seed() {
    let seed = service("sync_interval=100ms").await;
    let seed_url = format!("http://{}", address(&seed));
    let a = service(&format!("peers={seed_url}&sync_interval=100ms")).await;
    let mut events = a.subscribe("mesh.ping").await.unwrap();
    let b = service(&format!("peers={seed_url}&sync_interval=100ms")).await;
    // b learns of a from the seed's answer, then asks a itself at its next sync.
    let deadline = Instant::now() + Duration::from_secs(5);
    let event = loop {
        b.publish("mesh.ping", Message::new("hello")).await.unwrap();
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            break event.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "b never learned of a through the seed"
        );
    };
    assert_eq!(event.payload(), b"hello");
}

/// Hole 2: connections that send nothing, or their headers too slowly, or sit
/// idle after a request, are closed after `header_timeout`.
#[tokio::test]
async fn silent_slow_and_idle_connections_are_cut_off() {
    let bus = service("header_timeout=1s").await;
    let started = Instant::now();

    let mut silent = TcpStream::connect(address(&bus)).await.unwrap();
    let closed = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a silent connection was still open after 5 s"
    );

    let mut slow = TcpStream::connect(address(&bus)).await.unwrap();
    let head = b"GET /_switchboard/health HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut cut_after = None;
    for (sent, byte) in head.iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_after = Some(sent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let answer = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        cut_after.is_some() || answer.as_deref().is_some_and(|a| !a.contains("200 OK")),
        "a client sending its headers one byte at a time was served: {answer:?}"
    );

    let mut idle = TcpStream::connect(address(&bus)).await.unwrap();
    idle.write_all(head).await.unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    let answer = answer.expect("an idle keep-alive connection was still open after 5 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Hole 2: at most `max_connections` are served; the rest wait for a free slot.
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let bus = service("max_connections=3&header_timeout=30s").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(address(&bus)).await.unwrap());
    }
    // Let the server accept them before the next client comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = format!("http://{}/_switchboard/health", address(&bus));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(
        client.get(&health).send().await.is_err(),
        "a fourth connection was served beyond max_connections=3"
    );
    held.clear();
    let served = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}

/// Hole 3: a declared body over `max_body` is refused before it is read, and
/// an `Expect: 100-continue` client is never told to go on.
#[tokio::test]
async fn a_huge_declared_body_is_refused_before_reading() {
    let bus = service("max_body=1024").await;
    let mut stream = TcpStream::connect(address(&bus)).await.unwrap();
    stream
        .write_all(
            b"POST /requests/orders.get HTTP/1.1\r\nhost: x\r\n\
              content-length: 10000000000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server neither answered nor closed");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("sb-status: payload-too-large"), "{answer}");
    assert!(
        answer.contains(r#""status":"payload-too-large""#),
        "{answer}"
    );
}

async fn assert_documented(response: reqwest::Response, status: u16, sb_status: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["sb-status"], sb_status, "{status}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], sb_status, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// Hole 4: every error carries the documented JSON body and `sb-status`.
#[tokio::test]
async fn every_error_status_has_the_documented_body() {
    let bus = service("max_body=1024&server_timeout=300ms").await;
    let _echo = bus.subscribe("echo").await.unwrap();
    let base = format!("http://{}", address(&bus));
    let client = reqwest::Client::new();

    // 413 for a chunked body (no declared length) that grows too large.
    let mut stream = TcpStream::connect(address(&bus)).await.unwrap();
    let mut request =
        b"POST /requests/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'x'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let _ = stream.write_all(&request).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("sb-status: payload-too-large"), "{answer}");
    assert!(
        answer.contains(r#""status":"payload-too-large""#),
        "{answer}"
    );

    // 408 for a body that never finishes.
    let mut stream = TcpStream::connect(address(&bus)).await.unwrap();
    stream
        .write_all(b"POST /events/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("sb-status: timeout"), "{answer}");
    assert!(answer.contains(r#""status":"timeout""#), "{answer}");

    let unknown = client.get(format!("{base}/admin")).send().await.unwrap();
    assert_documented(unknown, 404, "not-found").await;
    let wrong_method = client
        .get(format!("{base}/requests/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_documented(wrong_method, 405, "not-found").await;

    let guarded = service("token=s3cret").await;
    let unauthorized = client
        .post(format!("http://{}/requests/echo", address(&guarded)))
        .send()
        .await
        .unwrap();
    assert_documented(unauthorized, 401, "unauthorized").await;
}

/// A subject in the path is percent-decoded: an encoded dot reaches the
/// handler of the decoded subject; bytes that are not UTF-8 once decoded,
/// and decoded subjects that are not valid (a space, CR LF, a wildcard, an
/// empty token), are refused with the documented body, for requests and
/// events alike; the responder serves on.
#[tokio::test]
async fn percent_encoded_subjects_are_decoded_or_refused() {
    let bus = service("").await;
    echo_replies(&bus, "orders.created").await;
    let base = format!("http://{}", address(&bus));
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("{base}{path}")).body("hello").send();

    let decoded = post("/requests/orders%2Ecreated").await.unwrap();
    assert_eq!(decoded.status(), 200);
    assert_eq!(decoded.text().await.unwrap(), "hello");
    let also = post("/requests/%6Frders.created").await.unwrap();
    assert_eq!(also.status(), 200, "an encoded letter");

    assert_documented(
        post("/requests/orders%FFcreated").await.unwrap(),
        400,
        "codec-error",
    )
    .await;
    assert_documented(
        post("/events/orders%C3created").await.unwrap(),
        400,
        "codec-error",
    )
    .await;
    for invalid in [
        "orders%20created",
        "orders%0D%0Acreated",
        "orders.%2A",
        "orders%2E%2Ecreated",
    ] {
        let request = post(&format!("/requests/{invalid}")).await.unwrap();
        assert_eq!(request.status(), 400, "request to {invalid}");
        assert_documented(request, 400, "codec-error").await;
        let event = post(&format!("/events/{invalid}")).await.unwrap();
        assert_documented(event, 400, "codec-error").await;
    }

    let after = post("/requests/orders.created").await.unwrap();
    assert_eq!(after.status(), 200, "the responder serves on");
}

/// Hole 6: a reply without a content-type is sent without one.
#[tokio::test]
async fn replies_carry_only_the_responders_content_type() {
    let bus = service("").await;
    echo_replies(&bus, "echo").await;
    let reply = reqwest::Client::new()
        .post(format!("http://{}/requests/echo", address(&bus)))
        .body("plain bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers().get("content-type").is_none(),
        "{:?}",
        reply.headers()
    );
    assert_eq!(reply.text().await.unwrap(), "plain bytes");
}
