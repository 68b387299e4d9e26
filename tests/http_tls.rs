//! `https://` services: peers call each other over TLS verified against the
//! configured CA, mutual TLS keeps out callers without a certificate, and a
//! wrong CA is a clear `Connect` error. Certificates are made in the test
//! (rcgen); everything listens on 127.0.0.1.
#![cfg(feature = "http")]

mod support;

use std::time::Duration;

use support::certs::TestPki;
use switchboard::{connect, Bus, ErrorKind, Message};

fn https(pki: &TestPki, ca: &str, extra: &str) -> String {
    format!(
        "https://127.0.0.1:0?tls_cert={}&tls_key={}&tls_ca={}{extra}",
        pki.file("cert.pem"),
        pki.file("key.pem"),
        pki.file(ca)
    )
}

/// Answers every request on `subject` with its payload reversed.
async fn reverser(bus: &Bus, subject: &str) {
    let mut requests = bus.subscribe(subject).await.unwrap();
    tokio::spawn(async move {
        while let Some(mut request) = requests.next().await {
            let mut payload = request.payload().to_vec();
            payload.reverse();
            let _ = request.reply(Message::new(payload)).await;
        }
    });
}

fn base(bus: &Bus) -> String {
    format!("https://{}", bus.local_address().unwrap())
}

#[tokio::test]
async fn peers_talk_over_tls_and_a_wrong_ca_is_a_connect_error() {
    let pki = TestPki::generate();
    let server = connect(&https(&pki, "ca.pem", "")).await.unwrap();
    reverser(&server, "text.reverse").await;

    let caller = connect(&https(&pki, "ca.pem", &format!("&peers={}", base(&server))))
        .await
        .unwrap();
    let reply = caller
        .request("text.reverse", Message::new("abc"))
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"cba");

    // Any HTTPS client that trusts the CA can call it too (curl, other languages).
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let direct = client
        .post(format!("{}/requests/text.reverse", base(&server)))
        .body("xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.text().await.unwrap(), "zyx");

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .post(format!(
            "http://{}/requests/text.reverse",
            server.local_address().unwrap()
        ))
        .body("xyz")
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP was served on the TLS port"
    );

    // A service that trusts another CA cannot reach it, and says why.
    let stranger = connect(&https(
        &pki,
        "other-ca.pem",
        &format!("&peers={}", base(&server)),
    ))
    .await
    .unwrap();
    // It never learns the server's subscriptions (the exchange fails the
    // handshake, logged once with the certificate error), so nothing is sent to it.
    match stranger.request("text.reverse", Message::new("abc")).await {
        Err(err) => assert!(
            matches!(err.kind(), ErrorKind::NoResponders | ErrorKind::Connect),
            "{err}"
        ),
        Ok(reply) => panic!("a peer with the wrong CA got a reply: {reply:?}"),
    }
    let direct_error = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(pki.path("other-ca.pem")).unwrap())
                .unwrap(),
        )
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
        .get(format!("{}/_switchboard/health", base(&server)))
        .send()
        .await
        .unwrap_err();
    assert!(direct_error.is_connect(), "{direct_error:?}");
}

#[tokio::test]
async fn mutual_tls_keeps_out_callers_without_a_certificate() {
    let pki = TestPki::generate();
    let server = connect(&https(&pki, "ca.pem", "&tls_client_auth=true"))
        .await
        .unwrap();
    reverser(&server, "text.reverse").await;

    // A peer presents its certificate (the same CA) and is served.
    let peer = connect(&https(&pki, "ca.pem", &format!("&peers={}", base(&server))))
        .await
        .unwrap();
    let reply = peer
        .request("text.reverse", Message::new("mtls"))
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"sltm");

    // A client that trusts the server but has no certificate is refused.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let refused = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(format!("{}/requests/text.reverse", base(&server)))
        .body("abc")
        .send()
        .await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
}

#[tokio::test]
async fn bad_tls_settings_fail_connect_with_the_option_named() {
    let pki = TestPki::generate();
    for (url, expected) in [
        (
            format!(
                "https://127.0.0.1:0?tls_cert=/nonexistent/cert.pem&tls_key={}",
                pki.file("key.pem")
            ),
            "tls_cert",
        ),
        (
            format!(
                "https://127.0.0.1:0?tls_cert={}&tls_key={}",
                pki.file("cert.pem"),
                pki.file("ca.pem")
            ),
            "tls_key",
        ),
    ] {
        let err = connect(&url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
}
