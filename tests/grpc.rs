//! The gRPC backend (`grpc://`) from the outside: a Python client generated
//! from `proto/` by grpcio-tools, a raw tonic client from the generated Rust
//! code, and hostile callers (no token, forged snapshots, oversized messages,
//! garbage on the socket). Loopback only; every wait is bounded.

#[path = "support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use switchboard::grpc::proto::mesh_client::MeshClient;
use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
use switchboard::grpc::proto::{Envelope, Snapshot, SubscribeRequest};
use switchboard::handler::{Context, Rejection, State};
use switchboard::{connect, Bus, Message, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "grpc-test-token";

#[derive(Debug, Serialize, Deserialize)]
struct PlaceOrder {
    item: String,
    quantity: u32,
    unit_cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order_id: u64,
    total_cents: u64,
    tenant: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: u64,
    item: String,
    total_cents: u64,
}

/// A typed handler: computes the total, echoes a header, publishes an event.
async fn place(
    order: PlaceOrder,
    context: Context,
    State(bus): State<Bus>,
) -> Result<Receipt, Rejection> {
    if order.quantity == 0 {
        return Err(Rejection::new("quantity must be at least 1").with_code("invalid_quantity"));
    }
    let total_cents = order.unit_cents * u64::from(order.quantity);
    let placed = OrderPlaced {
        order_id: 1001,
        item: order.item,
        total_cents,
    };
    bus.publish_json("orders.placed", &placed)
        .await
        .map_err(|e| Rejection::new(e.to_string()))?;
    Ok(Receipt {
        order_id: 1001,
        total_cents,
        tenant: context.headers().get("tenant").unwrap_or("").to_owned(),
    })
}

async fn orders_service(url: &str) -> (Bus, switchboard::service::RunningService) {
    let bus = connect(url).await.unwrap();
    let running = Service::new("orders", bus.clone())
        .state(bus.clone())
        .on("orders.place", place)
        .start()
        .await
        .unwrap();
    (bus, running)
}

fn endpoint(bus: &Bus) -> String {
    format!("http://{}", bus.local_address().unwrap())
}

/// The Python toolchain (scripts/python-grpc.sh) or, outside CI, a skip with the reason.
fn python_with_grpc() -> String {
    let found = std::process::Command::new("bash")
        .arg("scripts/python-grpc.sh")
        .stderr(Stdio::inherit())
        .output();
    match found {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap().trim().into(),
        Ok(out) if support::ci() => panic!("scripts/python-grpc.sh failed: {}", out.status),
        Err(err) if support::ci() => panic!("scripts/python-grpc.sh did not run: {err}"),
        _ => support::skip(
            "Python with grpcio-tools is not available (scripts/python-grpc.sh failed); with CI=true this fails".into(),
        ),
    }
}

/// A client generated from the .proto by another toolchain (Python's
/// grpcio-tools) calls a switchboard service written with typed handlers.
async fn python_client_generated_from_the_proto() {
    let python = python_with_grpc();
    let (bus, _running) = orders_service(&format!("grpc://127.0.0.1:0?token={TOKEN}")).await;
    let mut audit = bus.subscribe("audit.python").await.unwrap();
    let address = bus.local_address().unwrap().to_string();
    let client = tokio::process::Command::new(python)
        .args(["tests/grpc_python/client.py", &address, TOKEN, "proto"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), client)
        .await
        .expect("the Python client finishes within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "python client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let event = support::next_within(&mut audit, Duration::from_secs(5))
        .await
        .expect("the event Python published reached the subscriber");
    assert_eq!(event.payload(), br#"{"seen":true}"#);
    assert_eq!(event.headers().get("origin"), Some("python"));
}

/// The generated Rust client (`switchboard::grpc::proto`) with tonic alone:
/// a request, and a Subscribe stream following events another service publishes.
async fn raw_tonic_client_requests_and_subscribes() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0").await;
    let other = connect(&format!(
        "grpc://127.0.0.1:0?peers=grpc://{}",
        orders.local_address().unwrap()
    ))
    .await
    .unwrap();
    let mut client = SwitchboardClient::connect(endpoint(&orders)).await.unwrap();
    let reply = client
        .request(Envelope {
            subject: "orders.place".into(),
            headers: [("tenant".to_owned(), "acme".to_owned())].into(),
            payload: serde_json::to_vec(&PlaceOrder {
                item: "book".into(),
                quantity: 2,
                unit_cents: 500,
            })
            .unwrap()
            .into(),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt: Receipt = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        (receipt.total_cents, receipt.tenant.as_str()),
        (1000, "acme")
    );

    let mut events = client
        .subscribe(SubscribeRequest {
            subject: "audit.>".into(),
            group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // The stream's subscription is announced before the call answers: the
    // other service's next publish reaches it.
    other
        .publish("audit.login", Message::new("alice").with_header("k", "v"))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(event.subject, "audit.login");
    assert_eq!(&event.payload[..], b"alice");
    assert_eq!(event.headers.get("k").map(String::as_str), Some("v"));

    // The subject of a Subscribe is checked like any other.
    let refused = client
        .subscribe(SubscribeRequest {
            subject: "audit..>".into(),
            group: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// A Subscribe client that stops reading never holds up publishers: its
/// stream is ended with RESOURCE_EXHAUSTED once a buffer of events waits.
async fn a_stalled_subscriber_does_not_hold_up_publishers() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0?buffer=8&server_timeout=2s").await;
    let address = orders.local_address().unwrap();
    let publisher = connect(&format!(
        "grpc://127.0.0.1:0?peers=grpc://{address}&retries=0"
    ))
    .await
    .unwrap();
    let mut client = SwitchboardClient::connect(endpoint(&orders)).await.unwrap();
    let mut stalled = client
        .subscribe(SubscribeRequest {
            subject: "audit.>".into(),
            group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // The call answered once every known peer had the stream's subscription.
    // 4.8 MB: more than the client's HTTP/2 windows (2 MB a stream) and the buffer hold.
    let event = Message::new(vec![b'e'; 16 * 1024]);
    for n in 0..300 {
        publisher
            .publish("audit.bulk", event.clone())
            .await
            .unwrap_or_else(|err| panic!("publish {n} was held up: {err}"));
    }
    // Reading now: what was buffered, then the end of the stream.
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next()).await {
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(status))) => break status,
            Ok(None) => panic!("the stream ended without saying why after {received} events"),
            Err(_) => panic!(
                "the stream neither ended nor delivered within 10 s (after {received} events)"
            ),
        }
    };
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    assert!(received < 300, "{received}");
    // The service goes on serving, and a new stream works.
    let mut fresh = client
        .subscribe(SubscribeRequest {
            subject: "audit.>".into(),
            group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    publisher
        .publish("audit.after", Message::new("x"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), fresh.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(next.subject, "audit.after");
}

/// Error statuses reach a switchboard caller as the same errors as on every backend.
async fn bus_callers_see_the_usual_errors() {
    let (orders, _running) = orders_service(&format!("grpc://127.0.0.1:0?token={TOKEN}")).await;
    let seed = orders.local_address().unwrap();
    let caller = connect(&format!(
        "grpc://127.0.0.1:0?token={TOKEN}&peers=grpc://{seed}"
    ))
    .await
    .unwrap();
    let refused = caller
        .request_json::<_, Receipt>(
            "orders.place",
            &PlaceOrder {
                item: "x".into(),
                quantity: 0,
                unit_cents: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, switchboard::Error::Remote { code: Some(code), .. } if code == "invalid_quantity"),
        "{refused:?}"
    );
    let nobody = caller
        .request("nobody.home", Message::new("?"))
        .await
        .unwrap_err();
    assert!(
        matches!(nobody, switchboard::Error::NoResponders { .. }),
        "{nobody:?}"
    );

    // A service with the wrong token learns nothing and reaches nobody.
    let stranger = connect(&format!(
        "grpc://127.0.0.1:0?token=wrong&peers=grpc://{seed}&request_timeout=2s"
    ))
    .await
    .unwrap();
    let err = stranger
        .request("orders.place", Message::new("{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, switchboard::Error::NoResponders { .. }),
        "{err:?}"
    );
}

/// Without the token a raw call is refused before any handler runs.
async fn calls_without_the_token_are_refused() {
    let (orders, _running) = orders_service(&format!("grpc://127.0.0.1:0?token={TOKEN}")).await;
    let mut client = SwitchboardClient::connect(endpoint(&orders)).await.unwrap();
    let mut request = tonic::Request::new(Envelope {
        subject: "orders.place".into(),
        ..Envelope::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer not-it".parse().unwrap());
    let err = client.request(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut mesh = MeshClient::connect(endpoint(&orders)).await.unwrap();
    let err = mesh.exchange(Snapshot::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

/// A stranger cannot point the mesh elsewhere: a snapshot announcing another
/// address is refused, and peers it lists are not learned.
async fn forged_snapshots_are_refused() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0").await;
    let mut mesh = MeshClient::connect(endpoint(&orders)).await.unwrap();
    for forged in [
        "http://10.9.9.9:80",
        "not an address",
        "http://127.0.0.1:1/path",
    ] {
        let err = mesh
            .exchange(Snapshot {
                service: forged.into(),
                ..Snapshot::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument
            ),
            "{forged}: {err:?}"
        );
    }
    // Announcing itself is fine; the peers it lists are not taken from it.
    let answer = mesh
        .exchange(Snapshot {
            service: "http://127.0.0.1:9".into(),
            incarnation: 1,
            generation: 1,
            peers: vec!["http://10.9.9.9:80".into()],
            ..Snapshot::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !answer.peers.iter().any(|p| p.contains("10.9.9.9")),
        "{:?}",
        answer.peers
    );
    // Still serving.
    assert!(orders
        .request_json::<_, Receipt>(
            "orders.place",
            &PlaceOrder {
                item: "a".into(),
                quantity: 1,
                unit_cents: 1
            }
        )
        .await
        .is_ok());
}

/// A message over `max_body` is refused with a status; the service keeps serving.
async fn oversized_messages_are_refused() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0?max_body=1024").await;
    let mut client = SwitchboardClient::connect(endpoint(&orders)).await.unwrap();
    let err = client
        .request(Envelope {
            subject: "orders.place".into(),
            payload: vec![b'x'; 64 * 1024].into(),
            ..Envelope::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );
    let ok = client
        .request(Envelope {
            subject: "orders.place".into(),
            payload: br#"{"item":"a","quantity":1,"unit_cents":7}"#.to_vec().into(),
            ..Envelope::default()
        })
        .await
        .unwrap();
    assert!(!ok.into_inner().payload.is_empty());
}

/// Garbage on the socket (HTTP/1, random bytes, a half HTTP/2 preface) does
/// not disturb the server.
async fn garbage_on_the_socket_disturbs_nothing() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0").await;
    let address = orders.local_address().unwrap();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0xff, 0xff][..],
        &b"PRI * HTTP/2.0\r\n"[..],
    ] {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket.write_all(garbage).await.unwrap();
        let mut buffer = [0u8; 256];
        // The server answers or closes; either way within the bound.
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buffer)).await;
    }
    let caller = connect(&format!("grpc://127.0.0.1:0?peers=grpc://{address}"))
        .await
        .unwrap();
    let receipt: Receipt = caller
        .request_json(
            "orders.place",
            &PlaceOrder {
                item: "a".into(),
                quantity: 3,
                unit_cents: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(receipt.total_cents, 6);
}

/// `grpcs://`: services call each other over mutual TLS; a tonic client with
/// the CA and a certificate gets through (ALPN `h2`); a client without a
/// certificate, a plaintext one, and a service trusting another CA do not.
async fn tls_between_services_and_for_clients() {
    use support::certs::TestPki;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let pki = TestPki::generate();
    let url = |ca: &str, extra: &str| {
        format!(
            "grpcs://127.0.0.1:0?tls_cert={}&tls_key={}&tls_ca={}&tls_client_auth=true{extra}",
            pki.file("cert.pem"),
            pki.file("key.pem"),
            pki.file(ca)
        )
    };
    let (orders, _running) = orders_service(&url("ca.pem", "")).await;
    let address = orders.local_address().unwrap();
    let caller = connect(&url("ca.pem", &format!("&peers=grpcs://{address}")))
        .await
        .unwrap();
    let receipt: Receipt = caller
        .request_json(
            "orders.place",
            &PlaceOrder {
                item: "tls".into(),
                quantity: 4,
                unit_cents: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(receipt.total_cents, 20);

    let read = |name: &str| std::fs::read(pki.path(name)).unwrap();
    let order = || Envelope {
        subject: "orders.place".into(),
        payload: br#"{"item":"a","quantity":1,"unit_cents":3}"#.to_vec().into(),
        ..Envelope::default()
    };
    let channel = |config: ClientTlsConfig| {
        Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(config)
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
    };
    let with_certificate = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("cert.pem"), read("key.pem")));
    let mut client = SwitchboardClient::new(channel(with_certificate).connect().await.unwrap());
    assert!(!client
        .request(order())
        .await
        .unwrap()
        .into_inner()
        .payload
        .is_empty());

    // No client certificate: the handshake or the first call fails.
    let without = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem")));
    let refused = match channel(without).connect().await {
        Err(_) => true,
        Ok(channel) => SwitchboardClient::new(channel)
            .request(order())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    // Plaintext HTTP/2 to the TLS port.
    let plaintext = match Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
    {
        Err(_) => true,
        Ok(channel) => SwitchboardClient::new(channel)
            .request(order())
            .await
            .is_err(),
    };
    assert!(plaintext, "a plaintext client was served");
    // A service that trusts another CA cannot reach it (and is not learned by it).
    let stranger = connect(&url(
        "other-ca.pem",
        &format!("&peers=grpcs://{address}&request_timeout=2s"),
    ))
    .await
    .unwrap();
    let err = stranger
        .request("orders.place", Message::new("{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            switchboard::Error::NoResponders { .. } | switchboard::Error::Connect { .. }
        ),
        "{err:?}"
    );
    // And the service still serves its own.
    assert!(client.request(order()).await.is_ok());
}

/// A connection that never makes a request (silent, or only the HTTP/2
/// preface) is closed after `header_timeout`, so strangers cannot hold the
/// service's connection slots; callers are served meanwhile.
async fn connections_without_a_request_are_closed() {
    let (orders, _running) = orders_service("grpc://127.0.0.1:0?header_timeout=1s").await;
    let address = orders.local_address().unwrap();
    let mut idle = Vec::new();
    for preface in [&b""[..], &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]] {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket.write_all(preface).await.unwrap();
        idle.push(socket);
    }
    let caller = connect(&format!("grpc://127.0.0.1:0?peers=grpc://{address}"))
        .await
        .unwrap();
    let receipt: Receipt = caller
        .request_json(
            "orders.place",
            &PlaceOrder {
                item: "a".into(),
                quantity: 2,
                unit_cents: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(receipt.total_cents, 4);
    for (index, mut socket) in idle.into_iter().enumerate() {
        // Reads until the server closes (the server's SETTINGS frame may come first).
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buffer = [0u8; 256];
            loop {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "idle connection {index} still open after 5 s"
        );
    }
}

/// Misconfigured URLs are clear errors, not a server that half works.
async fn bad_urls_are_clear_errors() {
    for (url, expected) in [
        ("grpc://127.0.0.1:0?tls_cert=c.pem", "grpcs://"),
        ("grpcs://127.0.0.1:0", "tls_cert"),
        (
            "grpc://127.0.0.1:0?peers=http://127.0.0.1:1",
            "grpc://HOST:PORT",
        ),
        ("grpc://localhost:0", "IP address"),
        ("grpc://127.0.0.1:0?colour=blue", "unknown option `colour`"),
    ] {
        let err = connect(url).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
}

crate::tests!(
    python_client_generated_from_the_proto,
    raw_tonic_client_requests_and_subscribes,
    a_stalled_subscriber_does_not_hold_up_publishers,
    bus_callers_see_the_usual_errors,
    calls_without_the_token_are_refused,
    forged_snapshots_are_refused,
    oversized_messages_are_refused,
    garbage_on_the_socket_disturbs_nothing,
    tls_between_services_and_for_clients,
    connections_without_a_request_are_closed,
    bad_urls_are_clear_errors,
);
