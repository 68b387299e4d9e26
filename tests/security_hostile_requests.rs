//! A property test of the reply path: requests from foreign clients (raw
//! NATS, raw HTTP) with random sets of hostile headers — forged `sb-*`
//! control headers, absurd timeouts, broken trace context, non-ASCII and
//! control characters, oversized names and values — each get an answer, and
//! the responder keeps answering typed requests correctly. Bounded: 150
//! requests per backend, a fixed seed, loopback only.

mod support;

use std::time::Duration;

use switchboard::{Bus, Service};

const NAMES: &[&str] = &[
    "sb-status",
    "sb-error",
    "sb-error-code",
    "sb-timeout-ms",
    "sb-reply-to",
    "sb-correlation-id",
    "sb-deliver",
    "sb-message-id",
    "traceparent",
    "tracestate",
    "content-type",
    "Nats-Msg-Id",
    "tenant",
];

/// Hostile header sets from a fixed seed, so a failure can be replayed.
fn hostile_headers(seed: u64, count: usize) -> Vec<Vec<(String, String)>> {
    let long_name = "x".repeat(300);
    let values = [
        String::new(),
        "-1".into(),
        "0".into(),
        "18446744073709551615".into(),
        "99999999999999999999999999".into(),
        "handler-error".into(),
        "timeout".into(),
        "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzz-01".into(),
        "café".into(),
        "a\u{1}b".into(),
        "a".repeat(5000),
        "billing@> plain".into(),
        "_INBOX.not-yours".into(),
        "application/x-evil".into(),
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            (0..rng.usize(1..6))
                .map(|_| {
                    let name = if rng.u8(..) < 20 {
                        long_name.clone()
                    } else {
                        NAMES[rng.usize(..NAMES.len())].to_owned()
                    };
                    (name, values[rng.usize(..values.len())].clone())
                })
                .collect()
        })
        .collect()
}

/// A typed service that doubles numbers.
async fn doubler(bus: &Bus, subject: &str) -> switchboard::service::RunningService {
    Service::new("doubler", bus.clone())
        .on(subject, |n: u64| async move { Ok::<_, String>(n * 2) })
        .start()
        .await
        .unwrap()
}

async fn still_answers(bus: &Bus, subject: &str) {
    for n in [1u64, 21, 1000] {
        let doubled: u64 = bus.request_json(subject, &n).await.unwrap();
        assert_eq!(doubled, n * 2);
    }
}

async fn nats_responders_answer_every_hostile_request() {
    let Some(bus) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let subject = format!("{}.double", support::unique("hostile"));
    let running = doubler(&bus, &subject).await;
    let foreign =
        switchboard::nats::async_nats::connect(support::nats_url().trim_start_matches("nats://"))
            .await
            .unwrap();
    for (index, headers) in hostile_headers(14, 150).into_iter().enumerate() {
        let mut map = switchboard::nats::async_nats::HeaderMap::new();
        for (name, value) in &headers {
            map.insert(name.as_str(), value.as_str());
        }
        let request = switchboard::nats::async_nats::Request::new()
            .headers(map)
            .payload("21".into())
            .timeout(Some(Duration::from_secs(5)));
        let reply = foreign
            .send_request(subject.clone(), request)
            .await
            .unwrap_or_else(|err| panic!("request {index} with {headers:?} got no answer: {err}"));
        let forged_status = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("sb-status"))
            .map(|v| v.to_string());
        // Either the doubled number, or an error reply the responder made
        // (never a control header echoed from the request).
        assert!(
            &reply.payload[..] == b"42" || forged_status.is_some(),
            "request {index} with {headers:?}: {:?}",
            reply.payload
        );
    }
    still_answers(&bus, &subject).await;
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report}");
}

#[cfg(feature = "http")]
async fn http_responders_answer_every_hostile_request() {
    let bus = switchboard::connect("http://127.0.0.1:0").await.unwrap();
    let subject = "hostile.double";
    let running = doubler(&bus, subject).await;
    let url = format!("http://{}/requests/{subject}", bus.local_address().unwrap());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for (index, headers) in hostile_headers(14, 150).into_iter().enumerate() {
        let mut request = client.post(&url).body("21");
        for (name, value) in &headers {
            // Values HTTP itself cannot carry (control characters) are left out.
            if let Ok(value) = reqwest::header::HeaderValue::from_bytes(value.as_bytes()) {
                request = request.header(name.as_str(), value);
            }
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("request {index} with {headers:?} got no answer: {err}"));
        let status = response.status().as_u16();
        assert!(
            status == 200 || response.headers().contains_key("sb-status"),
            "request {index} with {headers:?}: HTTP {status} without sb-status"
        );
        if status == 200 {
            assert_eq!(response.text().await.unwrap(), "42", "request {index}");
        }
    }
    still_answers(&bus, subject).await;
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report}");
}

#[cfg(feature = "grpc")]
async fn grpc_responders_answer_every_hostile_request() {
    use switchboard::grpc::proto::{switchboard_client::SwitchboardClient, Envelope};

    let bus = switchboard::connect("grpc://127.0.0.1:0").await.unwrap();
    let subject = "hostile.double";
    let running = doubler(&bus, subject).await;
    let mut client = SwitchboardClient::connect(format!("http://{}", bus.local_address().unwrap()))
        .await
        .unwrap();
    for (index, headers) in hostile_headers(14, 150).into_iter().enumerate() {
        // Envelope headers are protobuf strings: every hostile value arrives as sent.
        let envelope = Envelope {
            subject: subject.into(),
            headers: headers.iter().cloned().collect(),
            payload: "21".into(),
        };
        let mut request = tonic::Request::new(envelope);
        request.set_timeout(Duration::from_secs(5));
        match client.request(request).await {
            Ok(reply) => assert_eq!(&reply.into_inner().payload[..], b"42", "request {index}"),
            Err(status) => assert!(
                status.metadata().contains_key("sb-status"),
                "request {index} with {headers:?}: {status:?} without sb-status"
            ),
        }
    }
    still_answers(&bus, subject).await;
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report}");
}

crate::tests!(
    nats_responders_answer_every_hostile_request,
    #[cfg(feature = "grpc")]
    grpc_responders_answer_every_hostile_request,
    #[cfg(feature = "http")]
    http_responders_answer_every_hostile_request,
);
