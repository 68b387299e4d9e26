//! NATS with TLS and authentication: a private `nats-server` that requires
//! TLS, client certificates and a user/password. The right settings connect
//! and serve; a wrong CA, password or missing client certificate is a clear
//! `Connect` error. Also: headers a foreign client sends outside the portable
//! rules never reach a handler. Certificates are made in the test (rcgen).
#![cfg(feature = "nats")]

mod support;

use std::process::Command;
use std::time::Duration;

use support::certs::TestPki;
use support::PrivateProcess;
use switchboard::{connect, ErrorKind, Message};

/// A `nats-server` on a free loopback port requiring TLS (verify: client
/// certificates) and user `alice` with password `s3cret`.
fn secured_server(pki: &TestPki) -> Option<PrivateProcess> {
    let binary = support::nats_server_binary()?;
    let (cert, key, ca) = (
        pki.file("cert.pem"),
        pki.file("key.pem"),
        pki.file("ca.pem"),
    );
    Some(PrivateProcess::start(
        "nats-server (TLS)",
        move |port, dir| {
            let config = dir.join("tls.conf");
            std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: true\n  timeout: 5\n}}\n\
                 authorization {{\n  user: alice\n  password: s3cret\n}}\n"
            ),
        )
        .unwrap();
            let mut command = Command::new(&binary);
            command.arg("-c").arg(config);
            command
        },
    ))
}

fn url(
    pki: &TestPki,
    server: &PrivateProcess,
    userinfo: &str,
    ca: &str,
    client_cert: bool,
) -> String {
    let mut url = format!(
        "nats://{userinfo}@127.0.0.1:{}?connect_timeout=3s&tls_ca={}",
        server.port(),
        pki.file(ca)
    );
    if client_cert {
        url.push_str(&format!(
            "&tls_cert={}&tls_key={}",
            pki.file("cert.pem"),
            pki.file("key.pem")
        ));
    }
    url
}

async fn tls_with_client_certificates_and_a_password_connects_and_serves() {
    let pki = TestPki::generate();
    let Some(server) = secured_server(&pki) else {
        return;
    };
    let bus = connect(&url(&pki, &server, "alice:s3cret", "ca.pem", true))
        .await
        .unwrap();
    let mut requests = bus.subscribe("secure.echo").await.unwrap();
    tokio::spawn(async move {
        while let Some(mut request) = requests.next().await {
            let payload = request.payload().to_vec();
            let _ = request.reply(Message::new(payload)).await;
        }
    });
    let reply = bus
        .request("secure.echo", Message::new("over tls"))
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"over tls");
}

async fn a_wrong_ca_password_or_missing_certificate_is_a_connect_error() {
    let pki = TestPki::generate();
    let Some(server) = secured_server(&pki) else {
        return;
    };
    for (case, url) in [
        (
            "wrong CA",
            url(&pki, &server, "alice:s3cret", "other-ca.pem", true),
        ),
        (
            "wrong password",
            url(&pki, &server, "alice:guess", "ca.pem", true),
        ),
        (
            "no client certificate",
            url(&pki, &server, "alice:s3cret", "ca.pem", false),
        ),
        (
            "plain text to a TLS server",
            format!(
                "nats://alice:s3cret@127.0.0.1:{}?connect_timeout=3s",
                server.port()
            ),
        ),
    ] {
        let started = std::time::Instant::now();
        let err = connect(&url).await.expect_err(case);
        assert_eq!(err.kind(), ErrorKind::Connect, "{case}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}: took {:?}",
            started.elapsed()
        );
        assert!(
            !err.to_string().contains("s3cret"),
            "{case}: the password leaked: {err}"
        );
        eprintln!("{case}: {err}");
    }
}

async fn headers_outside_the_portable_rules_never_reach_a_handler() {
    let Some(bus) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let subject = format!("{}.headers", support::unique("hostile"));
    let mut events = bus.subscribe(&subject).await.unwrap();
    // A client in another language, speaking NATS directly.
    let foreign =
        switchboard::nats::async_nats::connect(support::nats_url().trim_start_matches("nats://"))
            .await
            .unwrap();
    let mut headers = switchboard::nats::async_nats::HeaderMap::new();
    headers.insert("tenant", "café");
    headers.insert("trace-ok", "yes");
    foreign
        .publish_with_headers(subject.clone(), headers, "payload".into())
        .await
        .unwrap();
    foreign.flush().await.unwrap();
    let event = support::next_within(&mut events, Duration::from_secs(5))
        .await
        .expect("the event did not arrive");
    assert_eq!(event.headers().get("trace-ok"), Some("yes"));
    assert_eq!(
        event.headers().get("tenant"),
        None,
        "a non-ASCII value reached the handler"
    );
    assert_eq!(event.payload(), b"payload");
}

crate::tests!(
    tls_with_client_certificates_and_a_password_connects_and_serves,
    a_wrong_ca_password_or_missing_certificate_is_a_connect_error,
    headers_outside_the_portable_rules_never_reach_a_handler,
);
