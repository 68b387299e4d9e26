//! HTTP behaviour beyond the conformance suite: the wire format as a plain HTTP
//! client sees it, a peer killed and restarted mid-run, tokens, limits and
//! graceful shutdown. Everything listens on 127.0.0.1 ephemeral ports.
#![cfg(feature = "http")]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::{connect, Bus, Error, ErrorKind, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    item: String,
}

fn base(bus: &Bus) -> String {
    format!("http://{}", bus.local_address().unwrap())
}

/// A service answering `orders.get`: id 0 is an error, 99 is slow, others succeed.
async fn orders_service(options: &str) -> (Bus, switchboard::service::RunningService) {
    let bus = connect(&format!("http://127.0.0.1:0?{options}"))
        .await
        .unwrap();
    let running = Service::new("orders", bus.clone())
        .on("orders.get", |req: serde_json::Value| async move {
            match req["id"].as_u64() {
                Some(0) => Err("no such order".to_owned()),
                Some(99) => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(Order {
                        id: 99,
                        item: "slow".into(),
                    })
                }
                Some(id) => Ok(Order {
                    id,
                    item: format!("item-{id}"),
                }),
                None => Err("id missing".to_owned()),
            }
        })
        .start()
        .await
        .unwrap();
    (bus, running)
}

#[tokio::test]
async fn plain_http_clients_get_json_replies_and_meaningful_statuses() {
    let (bus, _running) = orders_service("max_body=1024").await;
    let url = format!("{}/requests/orders.get", base(&bus));
    let raw = reqwest::Client::new();

    let ok = raw.post(&url).body(r#"{"id":7}"#).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // JSON is the default codec: typed replies carry no content-type of their own.
    assert!(
        ok.headers().get("content-type").is_none(),
        "{:?}",
        ok.headers()
    );
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        json!({ "id": 7, "item": "item-7" })
    );

    let failed = raw.post(&url).body(r#"{"id":0}"#).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.headers()["sb-status"], "handler-error");
    assert_eq!(
        failed.json::<serde_json::Value>().await.unwrap(),
        json!({ "status": "handler-error", "error": "no such order",
                "service": "orders", "subject": "orders.get" })
    );

    let bad = raw.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["sb-status"], "codec-error");

    let unknown = raw
        .post(format!("{}/requests/nobody.here", base(&bus)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let too_big = raw.post(&url).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(too_big.status(), 413);

    let late = raw
        .post(&url)
        .header("sb-timeout-ms", "100")
        .body(r#"{"id":99}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504, "the caller's deadline was not honoured");

    let bad_subject = raw
        .post(format!("{}/requests/orders..get", base(&bus)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_subject.status(), 400);

    // Events: 202 once the subscribers took them.
    let mut sub = bus.subscribe("orders.created").await.unwrap();
    let accepted = raw
        .post(format!("{}/events/orders.created", base(&bus)))
        .header("tenant", "acme")
        .body("{\"id\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let event = sub.next().await.unwrap();
    assert_eq!(event.payload(), b"{\"id\":1}");
    assert_eq!(event.headers().get("tenant"), Some("acme"));
}

#[tokio::test]
async fn a_bearer_token_is_required_when_configured() {
    let (server, _running) = orders_service("token=s3cret").await;
    let url = format!("{}/requests/orders.get", base(&server));
    let raw = reqwest::Client::new();
    let anonymous = raw.post(&url).body(r#"{"id":1}"#).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = raw
        .post(&url)
        .bearer_auth("guess")
        .body(r#"{"id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = raw
        .post(&url)
        .bearer_auth("s3cret")
        .body(r#"{"id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // The scheme name is case-insensitive (RFC 7235).
    let lower_case = raw
        .post(&url)
        .header("authorization", "bearer s3cret")
        .body(r#"{"id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case.status(), 200);

    // A switchboard peer with the same token talks to it; one without is told why it fails.
    let client = connect(&format!(
        "http://127.0.0.1:0?token=s3cret&peers={}",
        base(&server)
    ))
    .await
    .unwrap();
    let order: Order = client
        .request_json("orders.get", &json!({ "id": 2 }))
        .await
        .unwrap();
    assert_eq!(order.id, 2);
    let outsider = connect(&format!("http://127.0.0.1:0?peers={}", base(&server)))
        .await
        .unwrap();
    let err = outsider
        .request_json::<_, Order>("orders.get", &json!({ "id": 2 }))
        .await
        .unwrap_err();
    // It never learned the server's subscriptions: the snapshot exchange was refused.
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
}

#[tokio::test]
async fn garbage_on_the_socket_disturbs_nothing() {
    let (bus, _running) = orders_service("").await;
    for garbage in [
        &b"\x00\x01\x02 not http at all\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /requests/orders.get HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
    ] {
        let mut socket = tokio::net::TcpStream::connect(bus.local_address().unwrap())
            .await
            .unwrap();
        socket.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut answer)).await;
    }
    let client = connect(&format!("http://127.0.0.1:0?peers={}", base(&bus)))
        .await
        .unwrap();
    let order: Order = client
        .request_json("orders.get", &json!({ "id": 5 }))
        .await
        .unwrap();
    assert_eq!(order.item, "item-5");
}

#[tokio::test]
async fn close_finishes_requests_already_in_progress() {
    let (server, running) = orders_service("").await;
    let client = connect(&format!("http://127.0.0.1:0?peers={}", base(&server)))
        .await
        .unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request_json::<_, Order>("orders.get", &json!({ "id": 99 }))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closing = tokio::spawn(async move {
        server.close().await.unwrap();
        running.shutdown().await;
    });
    let order = slow
        .await
        .unwrap()
        .expect("in-flight request survives close");
    assert_eq!(order.id, 99);
    closing.await.unwrap();
}

/// Runs a service on its own runtime and thread, so it can be killed abruptly.
struct Killable {
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
}

impl Killable {
    fn start(url: &str, received: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        let url = url.to_owned();
        // A runtime cannot be started from inside the test's runtime: build it on a thread of its own.
        let (runtime, url) = std::thread::spawn(move || Self::build(&url, received))
            .join()
            .unwrap();
        Killable {
            runtime: Some(runtime),
            url,
        }
    }

    fn build(
        url: &str,
        received: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> (tokio::runtime::Runtime, String) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (bus, _running) = runtime.block_on(async {
            let bus = connect(url).await.unwrap();
            let running = Service::new("stock", bus.clone())
                .on("stock.check", |item: String| async move {
                    Ok::<_, String>(format!("{item}: 3 left"))
                })
                .on_ordered("orders.created", move |id: u64| {
                    let received = received.clone();
                    async move {
                        received
                            .send(format!("order {id}"))
                            .map_err(|e| e.to_string())
                    }
                })
                .start()
                .await
                .unwrap();
            (bus, running)
        });
        let url = format!("http://{}", bus.local_address().unwrap());
        // The service lives in the runtime; keep its handles there until it is killed.
        runtime.spawn(async move {
            let _keep = (bus, _running);
            std::future::pending::<()>().await;
        });
        (runtime, url)
    }

    /// Kills the service: its runtime stops, nothing is announced, sockets close.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_for<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_reported_the_rest_keep_working_and_it_receives_again_when_back() {
    let caller = connect("http://127.0.0.1:0?sync_interval=100ms&retries=1&peer_timeout=1s")
        .await
        .unwrap();
    let caller_url = base(&caller);
    let (b_tx, mut b_rx) = tokio::sync::mpsc::unbounded_channel();
    let (c_tx, mut c_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut b = Killable::start(
        &format!("http://127.0.0.1:0?peers={caller_url}"),
        b_tx.clone(),
    );
    let b_url = b.url.clone();
    let c = connect(&format!("http://127.0.0.1:0?peers={caller_url}"))
        .await
        .unwrap();
    let _c_running = Service::new("audit", c.clone())
        .on_ordered("orders.created", move |id: u64| {
            let c_tx = c_tx.clone();
            async move { c_tx.send(id).map_err(|e| e.to_string()) }
        })
        .start()
        .await
        .unwrap();

    caller.publish_json("orders.created", &1u64).await.unwrap();
    assert_eq!(b_rx.recv().await.unwrap(), "order 1");
    assert_eq!(c_rx.recv().await.unwrap(), 1);
    let reply: String = caller.request_json("stock.check", "tea").await.unwrap();
    assert_eq!(reply, "tea: 3 left");

    b.kill();
    let err = caller
        .publish_json("orders.created", &2u64)
        .await
        .unwrap_err();
    match &err {
        Error::Undelivered { failed, .. } => {
            assert_eq!(failed.len(), 1, "{err}");
            assert!(failed[0].peer.starts_with(&b_url), "{err}");
        }
        other => panic!("expected Undelivered naming {b_url}, got {other:?}"),
    }
    assert_eq!(
        c_rx.recv().await.unwrap(),
        2,
        "the live peer missed an event"
    );

    let started = Instant::now();
    let err = caller
        .request_json::<_, String>("stock.check", "tea")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains(&b_url), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "request to a dead peer did not fail fast"
    );

    // Back on the same address: it announces itself and receives again.
    let address = b_url.trim_start_matches("http://");
    let b_again = Killable::start(&format!("http://{address}?peers={caller_url}"), b_tx);
    assert_eq!(b_again.url, b_url);
    let reply: String = wait_for("the restarted peer to answer", || async {
        caller.request_json("stock.check", "tea").await.ok()
    })
    .await;
    assert_eq!(reply, "tea: 3 left");
    caller.publish_json("orders.created", &3u64).await.unwrap();
    assert_eq!(b_rx.recv().await.unwrap(), "order 3");
    assert_eq!(c_rx.recv().await.unwrap(), 3);
    drop(b_again);
}

/// Two services given one address: the second fails at start with a
/// `Connect` error that names the setting giving each service its own port.
#[tokio::test]
async fn a_port_in_use_names_the_setting_to_change() {
    let first = connect("http://127.0.0.1:0").await.unwrap();
    let taken = first.local_address().unwrap();
    let err = connect(&format!("http://{taken}")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cannot listen") && text.contains("[services.NAME] url"),
        "{text}"
    );
    first.close().await.unwrap();
}

/// What a test's own thread logged at WARN and above.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Warnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where WARN events of this thread go, while a test captures them.
    static CAPTURING: std::cell::RefCell<Option<Warnings>> = const { std::cell::RefCell::new(None) };
}

/// The writer of the one subscriber this binary installs: it appends to the
/// capture of the thread the event happened on, if any.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|capturing| {
            if let Some(warnings) = &*capturing.borrow() {
                warnings.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends a capture when dropped.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|capturing| capturing.borrow_mut().take());
    }
}

impl Warnings {
    /// Captures WARN and above on this thread (a current-thread runtime runs
    /// every task of the test here) until the guard is dropped. One global
    /// subscriber serves every test of the binary: a per-thread default
    /// subscriber beside tests running in parallel could miss events.
    fn capture(&self) -> Capturing {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("the only subscriber of this test binary");
        });
        CAPTURING.with(|capturing| *capturing.borrow_mut() = Some(self.clone()));
        Capturing
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Two peers that each subscribed, closed in either order: a service that
/// closes tells its peers it is leaving, so nothing is logged at WARN. A peer
/// that vanishes without closing is still reported, once. Both mesh backends.
#[tokio::test]
async fn a_normal_close_logs_no_warning_and_a_vanished_peer_is_reported() {
    let warnings = Warnings::default();
    let _capture = warnings.capture();
    let schemes = [
        "http",
        #[cfg(feature = "grpc")]
        "grpc",
    ];
    for scheme in schemes {
        let pair = || async {
            let seed = connect(&format!("{scheme}://127.0.0.1:0")).await.unwrap();
            let seed_address = seed.local_address().unwrap();
            let other = connect(&format!(
                "{scheme}://127.0.0.1:0?peers={scheme}://{seed_address}"
            ))
            .await
            .unwrap();
            (seed, other)
        };
        for seed_closes_first in [true, false] {
            let (seed, other) = pair().await;
            let _a = seed.subscribe("quiet.a").await.unwrap();
            let _b = other.subscribe("quiet.b").await.unwrap();
            let (first, second) = match seed_closes_first {
                true => (seed, other),
                false => (other, seed),
            };
            first.close().await.unwrap();
            second.close().await.unwrap();
        }
        // Three: `b` learns of `a` from the seed's list only, and `a` closes
        // without knowing `b`: `b` trying `a` at its own close is not news.
        let (seed, a) = pair().await;
        let _a = a.subscribe("quiet.a").await.unwrap();
        let b = connect(&format!(
            "{scheme}://127.0.0.1:0?sync_interval=60s&peers={scheme}://{}",
            seed.local_address().unwrap()
        ))
        .await
        .unwrap();
        for bus in [a, b, seed] {
            bus.close().await.unwrap();
        }
        assert_eq!(warnings.text(), "", "a normal close is quiet on {scheme}");

        let (seed, other) = pair().await;
        let vanished = other.local_address().unwrap();
        let _a = seed.subscribe("quiet.a").await.unwrap();
        let b = other.subscribe("quiet.b").await.unwrap();
        drop((b, other));
        // Its port, once free, is held here (bound, not listening: calls to it
        // are refused), so no server of a test running beside this one can
        // take it and answer the seed in the vanished peer's place.
        let deadline = Instant::now() + Duration::from_secs(5);
        let _held = loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            if socket.bind(vanished).is_ok() {
                break socket;
            }
            assert!(
                Instant::now() < deadline,
                "{scheme}: a dropped peer kept its port"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            tokio::net::TcpStream::connect(vanished).await.is_err(),
            "{scheme}: the vanished peer's port still answers"
        );
        seed.close().await.unwrap();
        let text = std::mem::take(&mut *warnings.0.lock().unwrap());
        let text = String::from_utf8_lossy(&text);
        assert_eq!(
            text.matches("peer unreachable").count(),
            1,
            "a peer gone without a word is news on {scheme}: {text}"
        );
        assert!(text.contains(&vanished.port().to_string()), "{text}");
    }
}
