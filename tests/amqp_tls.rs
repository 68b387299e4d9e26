//! `amqps://` against a private RabbitMQ node with a TLS listener: a request
//! and an event cross it with the test CA given as `tls_ca`; a CA that did
//! not sign the broker's certificate and a plain `amqp://` connection to the
//! TLS port are clear connect errors.

mod support;

use std::time::Duration;

use support::certs::TestPki;
use support::rabbitmq::PrivateRabbit;
use switchboard::{connect, ErrorKind, Message, Service};

async fn requests_and_events_cross_tls_and_strangers_are_refused() {
    let pki = TestPki::generate();
    let Some(node) = PrivateRabbit::start(|node| {
        format!(
            "listeners.ssl.1 = 127.0.0.1:{}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            node.tls_port,
            pki.file("ca.pem"),
            pki.file("cert.pem"),
            pki.file("key.pem"),
        )
    }) else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", node.tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no TLS listener");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!(
        "amqps://localhost:{}?tls_ca={}",
        node.tls_port,
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
    let event = support::next_within(&mut events, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(event.payload(), b"sealed");
    running.shutdown().await;
    bus.close().await.unwrap();

    let stranger = format!(
        "amqps://localhost:{}?tls_ca={}&connect_timeout=3s",
        node.tls_port,
        pki.file("other-ca.pem")
    );
    let err = connect(&stranger).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let plain = format!("amqp://127.0.0.1:{}?connect_timeout=3s", node.tls_port);
    let err = connect(&plain).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
}

crate::tests!(requests_and_events_cross_tls_and_strangers_are_refused,);
