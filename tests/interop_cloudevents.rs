//! CloudEvents binary mode against the CloudEvents Rust SDK (`cloudevents-sdk`)
//! on every backend: what a switchboard service publishes on a route with
//! `cloudevents = true` is taken off the wire with the backend's raw client
//! and read by the SDK; events the SDK builds are put on the wire raw and
//! handled by a `Service` that reads their attributes; a malformed one is
//! dead-lettered with the reason.
//!
//! The SDK reads and writes headers through its HTTP binding. On Kafka the
//! binding names them `ce_*`: the test checks the record's raw keys are
//! those, and renames them to the HTTP binding's `ce-*` for the SDK (its own
//! Kafka binding needs a librdkafka built another way).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cloudevents::binding::http::to_event;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use switchboard::cloudevents::CloudEvent;
use switchboard::handler::State;
use switchboard::{wire, Bus, Message, Service, Settings};
use tokio::sync::mpsc;

use support::unique;

const WITHIN: Duration = Duration::from_secs(20);

/// How a test reaches a backend's wire without switchboard.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    Memory,
    Http,
    Grpc,
    Nats,
    Kafka,
    Amqp,
    Redis,
}

/// A bus on `url` whose `PREFIX.>` subjects are async CloudEvents routes,
/// dead letters going to `PREFIX.dead`.
async fn bus(url: &str, prefix: &str) -> Option<Bus> {
    let settings = Settings::from_toml(&format!(
        r#"
        [transports.default]
        url = "{url}"

        [cloudevents]
        source = "/orders"

        [events]
        dead_letter = "{prefix}.dead"
        max_attempts = 1

        [[routes]]
        subjects = "{prefix}.>"
        style = "async"
        cloudevents = true
        "#
    ))
    .unwrap();
    match settings.connect().await {
        Ok(bus) => Some(bus),
        Err(err) if support::ci() => panic!("{url} is unreachable and CI=true: {err}"),
        Err(err) => support::skip(format!(
            "{url} is unreachable ({err}); with CI=true this fails"
        )),
    }
}

fn header_map<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn data_json(event: &Event) -> Value {
    match event.data() {
        Some(Data::Json(value)) => value.clone(),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
        Some(Data::String(text)) => serde_json::from_str(text).unwrap(),
        None => Value::Null,
    }
}

/// Sends one event through switchboard and returns it as the raw client saw
/// it: (headers, payload).
async fn capture_outgoing(wire: Wire, bus: &Bus, subject: &str) -> (HeaderMap, Vec<u8>) {
    let order = json!({"sku": "tea", "quantity": 2});
    match wire {
        Wire::Memory => {
            let mut raw = bus.subscribe(subject).await.unwrap();
            bus.send::<_, ()>(subject, &order).await.unwrap();
            let incoming = support::next_within(&mut raw, WITHIN).await.unwrap();
            let map = header_map(incoming.headers().iter());
            (map, incoming.payload().to_vec())
        }
        Wire::Nats => {
            use futures_util::StreamExt;
            let client = switchboard::nats::async_nats::connect(support::nats_url())
                .await
                .unwrap();
            let mut raw = client.subscribe(subject.to_owned()).await.unwrap();
            // `flush` only writes the socket; a request nobody answers comes
            // back after the server processed the subscription, so the event
            // published next from the bus's connection cannot overtake it.
            let probe = switchboard::nats::async_nats::Request::new()
                .payload(Default::default())
                .timeout(Some(WITHIN));
            let synced = client.send_request(client.new_inbox(), probe).await;
            assert!(
                matches!(&synced, Err(e) if e.kind() == switchboard::nats::async_nats::RequestErrorKind::NoResponders),
                "the server did not answer the probe: {synced:?}"
            );
            bus.send::<_, ()>(subject, &order).await.unwrap();
            let message = tokio::time::timeout(WITHIN, raw.next())
                .await
                .unwrap()
                .unwrap();
            let mut map = HeaderMap::new();
            for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
                for value in values {
                    map.append(
                        HeaderName::from_bytes(name.to_string().as_bytes()).unwrap(),
                        HeaderValue::from_str(value.as_str()).unwrap(),
                    );
                }
            }
            (map, message.payload.to_vec())
        }
        Wire::Amqp => {
            // A queue of the test's own, bound to the events exchange.
            use futures_util::StreamExt;
            use switchboard::amqp::lapin::{self, options::*, types::FieldTable};
            let connection = lapin::Connection::connect(
                "amqp://127.0.0.1:5672",
                lapin::ConnectionProperties::default(),
            )
            .await
            .unwrap();
            let channel = connection.create_channel().await.unwrap();
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            channel
                .queue_bind(
                    queue.name().clone(),
                    switchboard::amqp::DEFAULT_EXCHANGE.into(),
                    subject.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let mut consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            bus.send::<_, ()>(subject, &order).await.unwrap();
            let delivery = tokio::time::timeout(WITHIN, consumer.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let mut map = HeaderMap::new();
            for (name, value) in delivery.properties.headers().as_ref().unwrap().inner() {
                if let lapin::types::AMQPValue::LongString(text) = value {
                    map.insert(
                        HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                        HeaderValue::from_bytes(text.as_bytes()).unwrap(),
                    );
                }
            }
            if let Some(content_type) = delivery.properties.content_type() {
                map.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_str(content_type.as_str()).unwrap(),
                );
            }
            connection.close(200, "done".into()).await.unwrap();
            (map, delivery.data)
        }
        Wire::Redis => {
            // The subject's stream, read back with XRANGE: its one entry.
            use switchboard::redis::redis;
            bus.send::<_, ()>(subject, &order).await.unwrap();
            let mut connection = redis_connection().await;
            let entries: redis::Value = redis::cmd("XRANGE")
                .arg(format!("switchboard:{subject}"))
                .arg("-")
                .arg("+")
                .query_async(&mut connection)
                .await
                .unwrap();
            let redis::Value::Array(entries) = entries else {
                panic!("no stream: {entries:?}")
            };
            let [redis::Value::Array(entry)] = entries.as_slice() else {
                panic!("not one entry: {entries:?}")
            };
            let redis::Value::Array(fields) = &entry[1] else {
                panic!("no fields: {entry:?}")
            };
            let text =
                |value: &redis::Value| -> Vec<u8> { redis::from_redis_value_ref(value).unwrap() };
            let mut map = HeaderMap::new();
            let mut body = Vec::new();
            for pair in fields.chunks_exact(2) {
                let (field, value) = (text(&pair[0]), text(&pair[1]));
                if field == b"payload" {
                    body = value;
                } else if let Some(name) = field.strip_prefix(b"h:") {
                    map.insert(
                        HeaderName::from_bytes(name).unwrap(),
                        HeaderValue::from_bytes(&value).unwrap(),
                    );
                }
            }
            (map, body)
        }
        Wire::Kafka => {
            use switchboard::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
            use switchboard::kafka::rdkafka::message::{Headers, Message as _};
            bus.send::<_, ()>(subject, &order).await.unwrap();
            let consumer: StreamConsumer = switchboard::kafka::rdkafka::ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:9092")
                .set("group.id", unique("cloudevents-raw"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            consumer.subscribe(&[subject]).unwrap();
            let record = tokio::time::timeout(WITHIN, consumer.recv())
                .await
                .unwrap()
                .unwrap();
            let mut keys = Vec::new();
            let mut map = HeaderMap::new();
            for header in record.headers().unwrap().iter() {
                keys.push(header.key.to_owned());
                // The Kafka binding's `ce_` is the HTTP binding's `ce-`.
                let name = match header.key.strip_prefix("ce_") {
                    Some(rest) => format!("ce-{rest}"),
                    None => header.key.to_owned(),
                };
                let value = std::str::from_utf8(header.value.unwrap()).unwrap();
                map.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            for key in ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"] {
                assert!(keys.iter().any(|k| k == key), "no {key} in {keys:?}");
            }
            assert!(
                !keys.iter().any(|k| k.starts_with("ce-")),
                "Kafka records name CloudEvents headers ce_*: {keys:?}"
            );
            (map, record.payload().unwrap().to_vec())
        }
        Wire::Grpc => {
            use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
            use switchboard::grpc::proto::SubscribeRequest;
            let address = bus.local_address().unwrap();
            let mut client = SwitchboardClient::connect(format!("http://{address}"))
                .await
                .unwrap();
            let mut stream = client
                .subscribe(SubscribeRequest {
                    subject: subject.to_owned(),
                    group: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            // The stream's subscription is in place once a probe reaches it.
            let envelope = loop {
                bus.send::<_, ()>(subject, &order).await.unwrap();
                if let Ok(next) =
                    tokio::time::timeout(Duration::from_millis(500), stream.message()).await
                {
                    break next.unwrap().unwrap();
                }
            };
            let map = header_map(
                envelope
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            (map, envelope.payload.to_vec())
        }
        Wire::Http => {
            // A stranger announcing itself as a peer that subscribes to `subject`.
            use axum::routing::post;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let snapshot = json!({
                "service": format!("http://{address}"),
                "incarnation": 1,
                "generation": 1,
                "subscriptions": [{ "subject": subject }],
                "peers": [format!("http://{}", bus.local_address().unwrap())],
            });
            let (seen_tx, mut seen) = mpsc::unbounded_channel::<(HeaderMap, Vec<u8>)>();
            let stranger = axum::Router::new()
                .route(
                    "/_switchboard/subscriptions",
                    post(move || {
                        let snapshot = snapshot.clone();
                        async move { axum::Json(snapshot) }
                    }),
                )
                .route(
                    "/events/{subject}",
                    post(move |headers: HeaderMap, body: axum::body::Bytes| {
                        let seen_tx = seen_tx.clone();
                        async move {
                            let _ = seen_tx.send((headers, body.to_vec()));
                            axum::http::StatusCode::OK
                        }
                    }),
                );
            tokio::spawn(async move { axum::serve(listener, stranger).await });
            let sender = Settings::from_toml(&format!(
                r#"
                [transports.default]
                url = "http://127.0.0.1:0?peers=http://{address}"
                [cloudevents]
                source = "/orders"
                [[routes]]
                subjects = "{subject}"
                style = "async"
                cloudevents = true
                "#
            ))
            .unwrap()
            .connect()
            .await
            .unwrap();
            // Sent until the stranger's subscription is learned.
            let deadline = tokio::time::Instant::now() + WITHIN;
            loop {
                let _ = sender.send::<_, ()>(subject, &order).await;
                if let Ok(Some(got)) =
                    tokio::time::timeout(Duration::from_millis(300), seen.recv()).await
                {
                    sender.close().await.unwrap();
                    break got;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stranger got no event"
                );
            }
        }
    }
}

/// An SDK-built event in binary mode, as the SDK's serializer writes it:
/// (headers, body).
fn sdk_binary(event: Event) -> (Vec<(String, String)>, Vec<u8>) {
    let request: http::Request<Option<Vec<u8>>> = event.try_into().unwrap();
    let (parts, body) = request.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    (headers, body.unwrap_or_default())
}

/// Puts an event (`ce-*` headers and body) on the wire to `subject` with the raw client.
async fn inject(
    wire: Wire,
    bus: &Bus,
    subject: &str,
    (headers, body): (Vec<(String, String)>, Vec<u8>),
) {
    match wire {
        Wire::Memory => {
            let mut message = Message::new(body);
            for (name, value) in &headers {
                message.headers.insert(name.as_str(), value.as_str());
            }
            // The transport itself, under the bus that would add the missing attributes.
            bus.transport().publish(subject, message).await.unwrap();
        }
        Wire::Nats => {
            let client = switchboard::nats::async_nats::connect(support::nats_url())
                .await
                .unwrap();
            let mut map = switchboard::nats::async_nats::HeaderMap::new();
            for (name, value) in &headers {
                map.insert(name.as_str(), value.as_str());
            }
            client
                .publish_with_headers(subject.to_owned(), map, body.into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
        Wire::Amqp => {
            use switchboard::amqp::lapin::{self, options::*, types::*};
            let connection = lapin::Connection::connect(
                "amqp://127.0.0.1:5672",
                lapin::ConnectionProperties::default(),
            )
            .await
            .unwrap();
            let channel = connection.create_channel().await.unwrap();
            let mut table = FieldTable::default();
            let mut properties = lapin::BasicProperties::default();
            for (name, value) in &headers {
                if name == "content-type" {
                    properties = properties.with_content_type(value.as_str().into());
                } else {
                    table.insert(
                        name.as_str().into(),
                        AMQPValue::LongString(value.as_str().into()),
                    );
                }
            }
            channel
                .basic_publish(
                    switchboard::amqp::DEFAULT_EXCHANGE.into(),
                    subject.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties.with_headers(table),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            connection.close(200, "done".into()).await.unwrap();
        }
        Wire::Redis => {
            use switchboard::redis::redis;
            let mut add = redis::cmd("XADD");
            add.arg(format!("switchboard:{subject}"))
                .arg("*")
                .arg("payload")
                .arg(&body);
            for (name, value) in &headers {
                add.arg(format!("h:{name}")).arg(value.as_str());
            }
            let _: String = add
                .query_async(&mut redis_connection().await)
                .await
                .unwrap();
        }
        Wire::Kafka => {
            use switchboard::kafka::rdkafka::message::{Header, OwnedHeaders};
            use switchboard::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
            let producer: FutureProducer = switchboard::kafka::rdkafka::ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:9092")
                .create()
                .unwrap();
            let mut record_headers = OwnedHeaders::new();
            for (name, value) in &headers {
                let key = match name.strip_prefix("ce-") {
                    Some(rest) => format!("ce_{rest}"),
                    None => name.clone(),
                };
                record_headers = record_headers.insert(Header {
                    key: &key,
                    value: Some(value.as_str()),
                });
            }
            producer
                .send(
                    FutureRecord::<(), _>::to(subject)
                        .payload(&body)
                        .headers(record_headers),
                    WITHIN,
                )
                .await
                .unwrap();
        }
        Wire::Grpc => {
            use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
            use switchboard::grpc::proto::Envelope;
            let address = bus.local_address().unwrap();
            let mut client = SwitchboardClient::connect(format!("http://{address}"))
                .await
                .unwrap();
            client
                .publish(Envelope {
                    subject: subject.to_owned(),
                    headers: headers.into_iter().collect::<BTreeMap<_, _>>(),
                    payload: body.into(),
                })
                .await
                .unwrap();
        }
        Wire::Http => {
            let address = bus.local_address().unwrap();
            let mut request = reqwest::Client::new()
                .post(format!("http://{address}/events/{subject}"))
                .body(body);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    }
}

type Seen = mpsc::UnboundedSender<(CloudEvent, Value)>;

async fn placed(order: Value, event: CloudEvent, State(seen): State<Seen>) -> Result<(), String> {
    seen.send((event, order)).map_err(|e| e.to_string())
}

fn sdk_event(id: &str, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("/sdk/tests")
        .ty(ty)
        .data("application/json", json!({"sku": "mint", "quantity": 7}))
        .build()
        .unwrap()
}

/// Both directions and a malformed event on the backend `url(prefix)` names.
async fn round_trip(wire: Wire, url: impl Fn(&str) -> String) {
    let prefix = unique("cloudevents").replace('-', "_");
    let Some(bus) = bus(&url(&prefix), &prefix).await else {
        return;
    };

    // Out: what switchboard publishes, read by the SDK.
    let outgoing = format!("{prefix}.placed");
    let (headers, payload) = capture_outgoing(wire, &bus, &outgoing).await;
    let event = to_event(&headers, payload)
        .unwrap_or_else(|e| panic!("{wire:?}: the SDK cannot read it: {e}; headers {headers:?}"));
    assert_eq!(event.ty(), outgoing, "{wire:?}");
    assert_eq!(event.source().as_str(), "/orders", "{wire:?}");
    assert!(!event.id().is_empty(), "{wire:?}");
    assert!(event.time().is_some(), "{wire:?}: no time");
    assert_eq!(
        event.datacontenttype(),
        Some("application/json"),
        "{wire:?}"
    );
    assert_eq!(
        data_json(&event),
        json!({"sku": "tea", "quantity": 2}),
        "{wire:?}"
    );

    // In: SDK-built events handled by a service that reads their attributes.
    let incoming = format!("{prefix}.received");
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(CloudEvent, Value)>();
    let mut dead = bus.subscribe(&format!("{prefix}.dead")).await.unwrap();
    let running = Service::new(format!("{prefix}-svc"), bus.clone())
        .state(seen_tx)
        .on(&incoming, placed)
        .start()
        .await
        .unwrap();
    inject(
        wire,
        &bus,
        &incoming,
        sdk_binary(sdk_event("sdk-1", "com.example.placed")),
    )
    .await;
    let (event, order) = tokio::time::timeout(WITHIN, seen.recv())
        .await
        .unwrap_or_else(|_| panic!("{wire:?}: the SDK event was not handled"))
        .unwrap();
    assert_eq!(event.id, "sdk-1", "{wire:?}");
    assert_eq!(event.source, "/sdk/tests", "{wire:?}");
    assert_eq!(event.ty, "com.example.placed", "{wire:?}");
    assert_eq!(event.specversion, "1.0", "{wire:?}");
    assert_eq!(order, json!({"sku": "mint", "quantity": 7}), "{wire:?}");

    // A malformed one (the SDK refuses to build an event without an id, so
    // its `ce-id` is removed after) is dead-lettered with the reason.
    let (mut headers, body) = sdk_binary(sdk_event("sdk-2", "com.example.placed"));
    headers.retain(|(name, _)| name != "ce-id");
    inject(wire, &bus, &incoming, (headers, body)).await;
    let letter = support::next_within(&mut dead, WITHIN)
        .await
        .unwrap_or_else(|| panic!("{wire:?}: the malformed event was not dead-lettered"));
    assert_eq!(
        letter.headers().get(wire::DEAD_LETTER_CODE),
        Some(switchboard::cloudevents::MALFORMED),
        "{wire:?}"
    );
    let reason = letter
        .headers()
        .get(wire::DEAD_LETTER_ERROR)
        .unwrap_or_default();
    assert!(reason.contains("ce-id"), "{wire:?}: {reason}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv())
            .await
            .is_err(),
        "{wire:?}: the handler ran for a malformed event"
    );
    let report = running.shutdown().await;
    assert!(report.is_clean(), "{wire:?}: {report:?}");
    bus.close().await.unwrap();
}

async fn on_memory() {
    round_trip(Wire::Memory, |prefix| format!("memory://{prefix}")).await;
}

async fn on_http() {
    round_trip(Wire::Http, |_| "http://127.0.0.1:0".into()).await;
}

async fn on_grpc() {
    round_trip(Wire::Grpc, |_| "grpc://127.0.0.1:0".into()).await;
}

async fn on_nats() {
    round_trip(Wire::Nats, |_| support::nats_url()).await;
}

/// JetStream: the events are stored in a stream of their own; the raw client
/// reads and writes the stream's subjects with core NATS.
async fn on_jetstream() {
    round_trip(Wire::Nats, |prefix| {
        format!(
            "{}?jetstream={}&jetstream_subjects={prefix}.>",
            support::nats_url(),
            prefix.to_ascii_uppercase()
        )
    })
    .await;
}

async fn on_kafka() {
    round_trip(Wire::Kafka, |_| support::kafka_url()).await;
}

async fn on_amqp() {
    round_trip(Wire::Amqp, |_| "amqp://127.0.0.1:5672".into()).await;
}

async fn on_redis() {
    round_trip(Wire::Redis, |_| "redis://127.0.0.1:6379".into()).await;
}

/// A raw connection to the test Redis.
async fn redis_connection() -> switchboard::redis::redis::aio::MultiplexedConnection {
    switchboard::redis::redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

crate::tests!(
    on_memory,
    on_http,
    on_grpc,
    on_nats,
    on_jetstream,
    on_kafka,
    on_amqp,
    on_redis
);
