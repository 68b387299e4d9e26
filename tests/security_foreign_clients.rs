//! What clients written by others see at the edges the docs describe: a raw
//! socket sending a chunked body to the GraphQL gateway, raw HTTP/2 gRPC
//! calls carrying spent deadlines and forged reserved headers, plain HTTP
//! calls, and size refusals crossing a mesh. Loopback only; every wait is bounded.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use serde_json::{json, Value};
use switchboard::graphql::Gateway;
use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
use switchboard::grpc::proto::Envelope;
use switchboard::handler::Context;
use switchboard::service::RunningService;
use switchboard::{connect, Bus, Message, Service, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A service whose `echo.headers` handler answers with the header names it
/// saw, counting its calls.
async fn echo_service(bus: &Bus) -> (RunningService, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let running = Service::new("echo", bus.clone())
        .on("echo.headers", move |_: Value, context: Context| {
            counted.fetch_add(1, Ordering::SeqCst);
            let names: Vec<String> = context
                .headers()
                .iter()
                .map(|(name, _)| name.to_owned())
                .collect();
            async move { Ok::<_, String>(json!({ "headers": names })) }
        })
        .start()
        .await
        .unwrap();
    (running, calls)
}

/// Reads what a raw socket gets back within 5 s: the status line and headers
/// (and whatever body came with them).
async fn read_response(socket: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// One HTTP/1.1 chunk of `data`.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The gateway bounds a body without `Content-Length` as it does a declared
/// one: past `max_body` it answers 413 without waiting for the rest, the
/// handler never runs, and a body under the limit still works.
async fn graphql_bounds_chunked_bodies() {
    let mut settings = Settings::from_toml(
        r#"
        [[routes]]
        subjects = "echo.headers"
        graphql = "query"

        [graphql]
        max_body = 4096
        "#,
    )
    .unwrap();
    settings.transports.insert(
        "default".into(),
        switchboard::settings::TransportSettings::new(format!(
            "memory://{}",
            support::unique("gql")
        )),
    );
    let bus = settings.connect().await.unwrap();
    let (_running, calls) = echo_service(&bus).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Gateway::new(bus.clone(), &settings).unwrap().router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let query = |padding: usize| {
        json!({ "query": format!("{{ echo_headers(input: {{}}) }} #{}", "x".repeat(padding)) })
            .to_string()
    };

    // 8 KiB of a body that announces no end: the answer comes while the client
    // still holds the rest back, so the gateway did not read to the end.
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let body = query(200 * 1024);
    for piece in body.as_bytes()[..8192].chunks(1024) {
        // The gateway may answer and close once past the limit: the rest is refused.
        if socket.write_all(&chunk(piece)).await.is_err() {
            break;
        }
    }
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("payload_too_large"), "{answer}");

    // A whole 200 KB chunked body: 413 as well (the writer may see the socket close).
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let body = body.into_bytes();
    let sending = tokio::spawn(async move {
        for piece in body.chunks(4096) {
            if writer.write_all(&chunk(piece)).await.is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
    });
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(reader);
    let _ = tokio::time::timeout(Duration::from_secs(5), sending).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "an oversized body reached the handler"
    );

    // A chunked body under the limit is served.
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let small = query(100);
    let mut request = head.clone().into_bytes();
    request.extend(chunk(small.as_bytes()));
    request.extend_from_slice(b"0\r\n\r\n");
    socket.write_all(&request).await.unwrap();
    let answer = read_response(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Malformed JSON: 400 in the same JSON error shape as every refusal.
    let malformed = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(malformed.headers()["content-type"], "application/json");
    let answer: Value = malformed.json().await.unwrap();
    assert_eq!(
        answer["errors"][0]["extensions"]["kind"], "bad_request",
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("InvalidRequest("),
        "Rust debug text in the answer: {answer}"
    );
}

/// A gRPC call over plain HTTP/2, as a client without a gRPC library sends
/// it: returns the `grpc-status` and `sb-status` of a trailers-only answer.
async fn raw_grpc_request(
    address: std::net::SocketAddr,
    body: Vec<u8>,
    timeout: Option<&str>,
) -> (String, String, String) {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend(body);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut request = client
        .post(format!(
            "http://{address}/switchboard.v1.Switchboard/Request"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(framed);
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let response = tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .expect("answered within 10 s")
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    (
        header("grpc-status"),
        header("sb-status"),
        header("grpc-message"),
    )
}

fn envelope(subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> Envelope {
    Envelope {
        subject: subject.into(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        payload: payload.to_vec().into(),
    }
}

/// A deadline already spent when the call arrives is `DEADLINE_EXCEEDED` /
/// `timeout` on gRPC and 504 `timeout` on HTTP; the handler does not run.
async fn spent_deadlines_are_timeouts() {
    let grpc = connect("grpc://127.0.0.1:0").await.unwrap();
    let (_grpc_running, grpc_calls) = echo_service(&grpc).await;
    let address = grpc.local_address().unwrap();
    let body = envelope("echo.headers", &[], b"{}").encode_to_vec();
    for spent in ["0m", "0n", "1u"] {
        let (code, sb_status, message) = raw_grpc_request(address, body.clone(), Some(spent)).await;
        assert_eq!(
            (code.as_str(), sb_status.as_str()),
            ("4", "timeout"),
            "grpc-timeout {spent}: {message}"
        );
    }
    assert_eq!(grpc_calls.load(Ordering::SeqCst), 0);
    // The same call with time to spare is served.
    let (code, _, message) = raw_grpc_request(address, body, Some("5S")).await;
    assert_eq!(code, "", "{message}");
    assert_eq!(grpc_calls.load(Ordering::SeqCst), 1);

    let http = connect("http://127.0.0.1:0").await.unwrap();
    let (_http_running, http_calls) = echo_service(&http).await;
    let url = format!(
        "http://{}/requests/echo.headers",
        http.local_address().unwrap()
    );
    let spent = reqwest::Client::new()
        .post(&url)
        .header("sb-timeout-ms", "0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status().as_u16(), 504);
    assert_eq!(spent.headers()["sb-status"], "timeout");
    assert_eq!(http_calls.load(Ordering::SeqCst), 0);
}

/// A payload over a peer's `max_body` fails with the true sizes on both mesh
/// backends, however the peer's address reads; a raw gRPC client gets them
/// as metadata.
async fn payload_sizes_travel_as_numbers() {
    for scheme in ["grpc", "http"] {
        let small = connect(&format!("{scheme}://127.0.0.1:0?max_body=1024"))
            .await
            .unwrap();
        let (_running, calls) = echo_service(&small).await;
        let seed = small.local_address().unwrap();
        let caller = connect(&format!("{scheme}://127.0.0.1:0?peers={scheme}://{seed}"))
            .await
            .unwrap();
        let payload = format!("\"{}\"", "x".repeat(4000));
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            caller.request("echo.headers", Message::new(payload)),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(
                err,
                switchboard::Error::PayloadTooLarge {
                    size: 4002,
                    limit: 1024
                }
            ),
            "{scheme}: {err:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{scheme}");
    }

    let small = connect("grpc://127.0.0.1:0?max_body=1024").await.unwrap();
    let (_running, _calls) = echo_service(&small).await;
    let endpoint = format!("http://{}", small.local_address().unwrap());
    let mut client = SwitchboardClient::connect(endpoint).await.unwrap();
    let status = client
        .request(envelope("echo.headers", &[], &[b'x'; 4002]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let metadata = |name: &str| {
        status
            .metadata()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(metadata("sb-payload-size"), "4002");
    assert_eq!(metadata("sb-payload-limit"), "1024");
}

/// Reserved headers a caller may not set never reach a handler from a
/// foreign client; `sb-key` and ordinary headers do. Malformed envelopes
/// and non-ASCII subjects get their documented answers, and the service
/// keeps serving.
async fn forged_reserved_headers_are_dropped() {
    let forged = [
        ("sb-status", "handler-error"),
        ("sb-error", "forged"),
        ("sb-reply-to", "elsewhere"),
        ("sb-correlation-id", "42"),
        ("sb-key", "k1"),
        ("tenant", "acme"),
    ];
    let expected = json!({ "headers": ["sb-key", "tenant"] });

    let grpc = connect("grpc://127.0.0.1:0").await.unwrap();
    let (_grpc_running, _) = echo_service(&grpc).await;
    let address = grpc.local_address().unwrap();
    let mut client = SwitchboardClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let reply = client
        .request(envelope("echo.headers", &forged, b"{}"))
        .await
        .unwrap()
        .into_inner();
    let seen: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(seen, expected, "gRPC");

    let status = client
        .request(envelope("orders.café", &[], b"{}"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("U+00E9"), "{}", status.message());

    // Not a protobuf Envelope: tonic's INTERNAL, as the status table says; nothing ran.
    let (code, _, _) = raw_grpc_request(address, vec![0xff; 16], None).await;
    assert_eq!(code, "13");

    let http = connect("http://127.0.0.1:0").await.unwrap();
    let (_http_running, _) = echo_service(&http).await;
    let mut request = reqwest::Client::new().post(format!(
        "http://{}/requests/echo.headers",
        http.local_address().unwrap()
    ));
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let reply = request.body("{}").send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let seen: Value = reply.json().await.unwrap();
    assert_eq!(seen, expected, "HTTP");

    // Both still serve a plain call.
    let reply = client
        .request(envelope("echo.headers", &[], b"{}"))
        .await
        .unwrap();
    assert!(!reply.into_inner().payload.is_empty());
}

/// A stranger announcing itself as an HTTP peer that answers with an endless
/// body cannot make the caller buffer it: reading stops at `max_body`, the
/// caller gets a clear error, and the stranger's stream is dropped early.
async fn an_endless_reply_from_a_peer_is_cut_at_max_body() {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let snapshot = json!({
        "service": format!("http://{address}"),
        "incarnation": 1,
        "generation": 1,
        "subscriptions": [{ "subject": "huge.reply" }],
        "peers": [],
    });
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 4096; // 256 MiB, made only as the caller reads
    let produced = Arc::new(AtomicUsize::new(0));
    let counted = produced.clone();
    let stranger = axum::Router::new()
        .route(
            "/_switchboard/subscriptions",
            post(move || {
                let snapshot = snapshot.clone();
                async move { axum::Json(snapshot) }
            }),
        )
        .route(
            "/requests/huge.reply",
            post(move || {
                let counted = counted.clone();
                async move {
                    let chunks = futures_util::stream::iter(0..CHUNKS).map(move |_| {
                        counted.fetch_add(CHUNK, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; CHUNK]))
                    });
                    axum::body::Body::from_stream(chunks)
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, stranger).await });
    let caller = connect(&format!(
        "http://127.0.0.1:0?peers=http://{address}&max_body=65536"
    ))
    .await
    .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        caller.request("huge.reply", Message::new("{}")),
    )
    .await
    .expect("the caller gave up within 20 s")
    .unwrap_err();
    assert!(err.to_string().contains("max_body"), "{err}");
    let produced = produced.load(Ordering::SeqCst);
    assert!(
        produced < CHUNK * CHUNKS / 8,
        "the stranger produced {produced} bytes: the reply was read far past the limit"
    );
}

crate::tests!(
    graphql_bounds_chunked_bodies,
    spent_deadlines_are_timeouts,
    payload_sizes_travel_as_numbers,
    forged_reserved_headers_are_dropped,
    an_endless_reply_from_a_peer_is_cut_at_max_body,
);
