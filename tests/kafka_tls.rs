//! Kafka with TLS and SASL: a private Apache Kafka broker whose client
//! listener is SASL_SSL (PLAIN and SCRAM-SHA-256 users, a certificate made
//! in the test by rcgen). The right settings publish, consume and answer
//! requests; a wrong password, a wrong CA or plaintext is a clear `Connect`
//! error within the connect timeout.
#![cfg(feature = "kafka")]

mod support;

use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::kafka_broker::{self, SASL_USERS};
use support::PrivateProcess;
use switchboard::{connect, ErrorKind, Message, Service};

fn secured_broker(pki: &TestPki) -> Option<PrivateProcess> {
    let lib = kafka_broker::lib_dir()?;
    let keystore = pki.file("keystore.pem");
    Some(PrivateProcess::start(
        "kafka (SASL_SSL)",
        move |port, dir| kafka_broker::secured_command(&lib, &keystore, port, dir),
    ))
}

fn url(pki: &TestPki, broker: &PrivateProcess, user: &str, password: &str, extra: &str) -> String {
    format!(
        "kafka://{user}:{password}@127.0.0.1:{}?tls_ca={}&assignment_timeout=60s{extra}",
        broker.port(),
        pki.file("ca.pem")
    )
}

async fn sasl_over_tls_publishes_consumes_and_answers_requests() {
    let pki = TestPki::generate();
    let Some(broker) = secured_broker(&pki) else {
        return;
    };
    let (alice, alice_password) = SASL_USERS[0];
    let (bob, bob_password) = SASL_USERS[1];
    // PLAIN: a service answers, an event arrives.
    let bus = support::connect_when_ready(
        &url(&pki, &broker, alice, alice_password, ""),
        Duration::from_secs(60),
    )
    .await;
    let subject = format!("{}.events", support::unique("secure"));
    let mut events = bus.subscribe(&subject).await.unwrap();
    bus.publish(&subject, Message::new("over sasl_ssl"))
        .await
        .unwrap();
    let event = support::next_within(&mut events, Duration::from_secs(30))
        .await
        .expect("the event did not arrive over SASL_SSL");
    assert_eq!(event.payload(), b"over sasl_ssl");

    let service = Service::new("secure", bus.clone())
        .on("secure.upper", |text: String| async move {
            Ok::<_, String>(text.to_uppercase())
        })
        .start()
        .await
        .unwrap();
    // SCRAM-SHA-256: another client calls it.
    let caller = connect(&url(
        &pki,
        &broker,
        bob,
        bob_password,
        "&sasl_mechanism=SCRAM-SHA-256",
    ))
    .await
    .unwrap();
    let reply: String = caller
        .request_json("secure.upper", &"scram".to_owned())
        .await
        .unwrap();
    assert_eq!(reply, "SCRAM");
    service.shutdown().await;
}

async fn a_wrong_password_ca_or_protocol_is_a_connect_error() {
    let pki = TestPki::generate();
    let Some(broker) = secured_broker(&pki) else {
        return;
    };
    let (alice, alice_password) = SASL_USERS[0];
    // Wait until the broker answers the right credentials, so failures below are about them.
    drop(
        support::connect_when_ready(
            &url(&pki, &broker, alice, alice_password, ""),
            Duration::from_secs(60),
        )
        .await,
    );
    let fast = "&connect_timeout=5s";
    for (case, url, cause) in [
        (
            "wrong password",
            url(&pki, &broker, alice, "guess", fast),
            "authentication",
        ),
        (
            "wrong CA",
            format!(
                "kafka://{alice}:{alice_password}@127.0.0.1:{}?tls_ca={}{fast}",
                broker.port(),
                pki.file("other-ca.pem")
            ),
            "certificate",
        ),
        (
            "plaintext to a SASL_SSL listener",
            format!("kafka://127.0.0.1:{}?connect_timeout=5s", broker.port()),
            "",
        ),
    ] {
        let started = Instant::now();
        let err = connect(&url).await.expect_err(case);
        assert_eq!(err.kind(), ErrorKind::Connect, "{case}: {err}");
        let text = err.to_string();
        assert!(
            text.to_lowercase().contains(cause),
            "{case}: the cause is not named: {text}"
        );
        assert!(
            !text.contains(alice_password),
            "{case}: the password leaked: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{case}: took {:?}",
            started.elapsed()
        );
        eprintln!("{case}: {text}");
    }
}

crate::tests!(
    sasl_over_tls_publishes_consumes_and_answers_requests,
    a_wrong_password_ca_or_protocol_is_a_connect_error,
);
