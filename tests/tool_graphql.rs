//! The GraphQL gateway, called as a client would: GraphQL over HTTP with
//! reqwest, and subscriptions over a WebSocket speaking `graphql-transport-ws`
//! (tokio-tungstenite), against a gateway served on a loopback port.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::graphql::Gateway;
use switchboard::{Bus, Service, Settings};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Serves `gateway` on a free loopback port; returns its base URL.
async fn serve(gateway: &Gateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = gateway.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/graphql")
}

/// POSTs one GraphQL operation; returns the status and the JSON answer.
async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn settings(toml: &str, hub: &str) -> Settings {
    let mut settings = Settings::from_toml(toml).unwrap();
    settings.transports.insert(
        "default".into(),
        switchboard::settings::TransportSettings::new(hub),
    );
    settings
}

/// The catalog service: `catalog.price` answers, `catalog.fail` always fails,
/// `orders.place` (async) hands each order to `placed`.
async fn start_services(
    bus: &Bus,
    placed: tokio::sync::mpsc::UnboundedSender<Value>,
) -> switchboard::service::RunningService {
    Service::new("catalog", bus.clone())
        .on("catalog.price", |item: Value| async move {
            Ok::<_, String>(json!({ "sku": item["sku"], "cents": 1299 }))
        })
        .on("catalog.stock", |_: Value| async move {
            Ok::<_, String>(json!({ "left": 3 }))
        })
        .on("catalog.fail", |_: Value| async move {
            Err::<Value, _>(
                switchboard::handler::Rejection::new("the catalog is closed").with_code("closed"),
            )
        })
        .on("orders.place", move |order: Value| {
            let placed = placed.clone();
            async move { placed.send(order).map_err(|err| err.to_string()) }
        })
        .start()
        .await
        .unwrap()
}

const SHOP: &str = r#"
    [[routes]]
    subjects = "catalog.price"
    graphql = "query"

    [[routes]]
    subjects = "catalog.stock"
    style = "async"
    graphql = "query"

    [[routes]]
    subjects = "catalog.fail"
    graphql = "query"

    [[routes]]
    subjects = "orders.place"
    style = "async"
    graphql = "mutation"

    [[routes]]
    subjects = "orders.>"
    graphql = "subscription"
"#;

async fn queries_and_mutations_reach_the_services() {
    let settings = settings(SHOP, &format!("memory://{}", support::unique("gql")));
    let bus = settings.connect().await.unwrap();
    let (placed, mut orders) = tokio::sync::mpsc::unbounded_channel();
    let running = start_services(&bus, placed).await;
    let gateway = Gateway::new(bus.clone(), &settings).unwrap();
    let url = serve(&gateway).await;

    let (status, answer) = post(
        &url,
        None,
        json!({ "query": "{ catalog_price(input: {sku: \"A1\"}) }" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"]["catalog_price"],
        json!({"sku": "A1", "cents": 1299})
    );

    // Variables work as any GraphQL client sends them.
    let (_, answer) = post(
        &url,
        None,
        json!({ "query": "query Price($item: JSON) { catalog_price(input: $item) }",
                "variables": { "item": { "sku": "B2" } } }),
    )
    .await;
    assert_eq!(answer["data"]["catalog_price"]["sku"], "B2", "{answer}");

    // A query is a request even on an async route: it needs its answer.
    let (_, answer) = post(&url, None, json!({ "query": "{ catalog_stock }" })).await;
    assert_eq!(
        answer["data"]["catalog_stock"],
        json!({"left": 3}),
        "{answer}"
    );

    // A mutation on an async route publishes: accepted, handled later.
    let (_, answer) = post(
        &url,
        None,
        json!({ "query": "mutation { orders_place(input: {id: 7}) }" }),
    )
    .await;
    assert_eq!(
        answer["data"]["orders_place"],
        json!({"accepted": true}),
        "{answer}"
    );
    let order = tokio::time::timeout(Duration::from_secs(5), orders.recv())
        .await
        .expect("the order reached the service")
        .unwrap();
    assert_eq!(order, json!({"id": 7}));

    // A handler's failure is a GraphQL error with the switchboard kind.
    let (status, answer) = post(&url, None, json!({ "query": "{ catalog_fail(input: 1) }" })).await;
    assert_eq!(status, 200);
    let error = &answer["errors"][0];
    assert_eq!(error["extensions"]["kind"], "remote", "{answer}");
    assert_eq!(error["extensions"]["code"], "closed", "{answer}");
    assert_eq!(error["extensions"]["service"], "catalog", "{answer}");
    assert_eq!(error["extensions"]["subject"], "catalog.fail", "{answer}");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("the catalog is closed"));

    // What is exposed is listed; nothing else is.
    let (_, answer) = post(&url, None, json!({ "query": "{ subjects }" })).await;
    assert_eq!(
        answer["data"]["subjects"].as_array().unwrap().len(),
        5,
        "{answer}"
    );
    let (_, answer) = post(&url, None, json!({ "query": "{ orders_report }" })).await;
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("orders_report"));

    assert!(running.shutdown().await.is_clean());
}

async fn strangers_and_hostile_requests_are_refused() {
    let toml = format!("{SHOP}\n[graphql]\ntoken = \"s3cret\"\nmax_body = 2048\nmax_depth = 4\n");
    let settings = settings(&toml, &format!("memory://{}", support::unique("gql")));
    let bus = settings.connect().await.unwrap();
    let (placed, _orders) = tokio::sync::mpsc::unbounded_channel();
    let running = start_services(&bus, placed).await;
    let url = serve(&Gateway::new(bus.clone(), &settings).unwrap()).await;
    let price = json!({ "query": "{ catalog_price(input: {sku: \"A1\"}) }" });

    let (status, answer) = post(&url, None, price.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(answer["errors"][0]["extensions"]["kind"], "unauthorized");
    let (status, _) = post(&url, Some("wrong"), price.clone()).await;
    assert_eq!(status, 401);

    // Too large: refused from the declared length, before the body is read.
    // The connection closes: the unread body must not be read as a next request.
    let huge = json!({ "query": format!("{{ subjects }} #{}", "x".repeat(4096)) });
    let refused = reqwest::Client::new()
        .post(&url)
        .bearer_auth("s3cret")
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 413);
    assert_eq!(refused.headers()["connection"], "close");

    // Too deep: a GraphQL error, no call made.
    let deep = json!({ "query": "{ __schema { types { fields { type { ofType { name } } } } } }" });
    let (_, answer) = post(&url, Some("s3cret"), deep).await;
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{answer}"
    );

    // Garbage is a 400, and the gateway keeps serving.
    let garbage = reqwest::Client::new()
        .post(&url)
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    let (status, answer) = post(&url, Some("s3cret"), price).await;
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["catalog_price"]["cents"], 1299, "{answer}");

    // A WebSocket without the token in connection_init is closed.
    let mut socket = websocket(&url).await;
    socket
        .send(WsMessage::text(
            json!({"type": "connection_init", "payload": {}}).to_string(),
        ))
        .await
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    assert!(
        matches!(refused, Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))),
        "{refused:?}"
    );

    // A WebSocket that never says connection_init is closed, not kept.
    let mut idle = websocket(&url).await;
    let within = switchboard::graphql::CONNECTION_INIT_WITHIN + Duration::from_secs(5);
    let closed = tokio::time::timeout(within, idle.next())
        .await
        .expect("an idle WebSocket is closed");
    assert!(
        matches!(closed, Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
    assert!(running.shutdown().await.is_clean());
}

async fn misconfigured_routes_fail_at_build() {
    let hub = format!("memory://{}", support::unique("gql"));
    for (toml, why) in [
        (
            "[[routes]]\nsubjects = \"orders.*\"\ngraphql = \"mutation\"",
            "pattern",
        ),
        (
            "[[routes]]\nsubjects = \"a.b-c\"\ngraphql = \"query\"\n[[routes]]\nsubjects = \"a.b_c\"\ngraphql = \"query\"",
            "already taken",
        ),
    ] {
        let settings = settings(toml, &hub);
        let bus = settings.connect().await.unwrap();
        let err = Gateway::new(bus, &settings).err().expect("refused");
        assert_eq!(err.kind(), switchboard::ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(why), "{err}");
    }
}

/// Opens a `graphql-transport-ws` WebSocket to the gateway at `url`.
async fn websocket(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next protocol message that is not a ping.
async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .unwrap();
        if let WsMessage::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] != "ping" {
                return message;
            }
        }
    }
}

/// Over NATS: another service publishes order events; a GraphQL client
/// subscribed through the gateway receives each, in order.
async fn a_subscription_streams_events_another_service_publishes() {
    let url = support::nats_url();
    let Some(probe) = support::connect_or_skip(&url).await else {
        return;
    };
    probe.close().await.unwrap();
    let prefix = support::unique("gqlsub");
    let toml = format!(
        "[[routes]]\nsubjects = \"{prefix}.>\"\ngraphql = \"subscription\"\n[graphql]\ntoken = \"s3cret\"\n"
    );
    let settings = settings(&toml, &url);
    let gateway_bus = settings.connect().await.unwrap();
    let gateway = Gateway::new(gateway_bus.clone(), &settings).unwrap();
    let endpoint = serve(&gateway).await;
    let field = gateway.fields()[0].name.clone();

    let mut socket = websocket(&endpoint).await;
    let init = json!({"type": "connection_init", "payload": {"authorization": "Bearer s3cret"}});
    socket
        .send(WsMessage::text(init.to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": format!("subscription {{ {field} {{ subject payload headers }} }}")}});
    socket
        .send(WsMessage::text(subscribe.to_string()))
        .await
        .unwrap();

    // Another service, on its own connection, publishes until the first event
    // arrives (the subscription is live once one does), then three numbered ones.
    let orders = switchboard::connect(&url).await.unwrap();
    let subject = format!("{prefix}.placed");
    let first = loop {
        orders
            .publish_json(&subject, &json!({"order": 0}))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(200), next_json(&mut socket)).await {
            Ok(message) => break message,
            Err(_) => continue,
        }
    };
    assert_eq!(first["type"], "next", "{first}");
    let mut seen = Vec::new();
    for order in 1..=3 {
        let event = switchboard::Message::json(&json!({"order": order}))
            .unwrap()
            .with_header("trace-me", "yes");
        orders.publish(&subject, event).await.unwrap();
    }
    while seen.len() < 3 {
        let message = next_json(&mut socket).await;
        let event = &message["payload"]["data"][&field];
        if event["payload"]["order"] == 0 {
            continue; // a late copy of the probe events
        }
        assert_eq!(event["subject"], subject.as_str(), "{message}");
        assert_eq!(event["headers"]["trace-me"], "yes", "{message}");
        seen.push(event["payload"]["order"].as_u64().unwrap());
    }
    assert_eq!(seen, [1, 2, 3]);
    socket
        .send(WsMessage::text(
            json!({"id": "1", "type": "complete"}).to_string(),
        ))
        .await
        .unwrap();
    orders.close().await.unwrap();
    gateway_bus.close().await.unwrap();
}

/// The handler's Rust types, deriving async-graphql's traits besides serde's.
mod typed {
    use async_graphql::{Enum, InputObject, SimpleObject};
    use serde::{Deserialize, Serialize};

    #[derive(InputObject, Serialize, Deserialize)]
    pub struct PlaceOrder {
        pub item: String,
        pub quantity: u32,
        pub gift_wrap: Option<bool>,
    }

    #[derive(Enum, Copy, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum OrderState {
        Accepted,
        OnHold,
    }

    #[derive(SimpleObject, Serialize, Deserialize)]
    pub struct Line {
        pub item: String,
        pub unit_cents: u32,
    }

    #[derive(SimpleObject, Serialize, Deserialize)]
    pub struct Receipt {
        pub order_id: u32,
        pub total_cents: u32,
        pub state: OrderState,
        pub lines: Vec<Line>,
        pub note: Option<String>,
    }

    #[derive(SimpleObject, Serialize, Deserialize)]
    pub struct Settled {
        pub order_id: u32,
        pub state: OrderState,
    }
}

/// Typed fields: the schema shows the handler's types, inputs are checked by
/// GraphQL before any call and reach the handler as its serde JSON, results
/// are selected field by field (serde `snake_case` read as `camelCase`, enum
/// variants as GraphQL items), and a typed subscription streams typed payloads.
async fn typed_fields_follow_the_handlers_types() {
    use switchboard::graphql::Types;
    use typed::{Line, OrderState, PlaceOrder, Receipt, Settled};

    let toml = r#"
        [[routes]]
        subjects = "orders.place"
        graphql = "query"

        [[routes]]
        subjects = "orders.settled"
        graphql = "subscription"
    "#;
    let settings = settings(toml, &format!("memory://{}", support::unique("gqltyped")));
    let bus = settings.connect().await.unwrap();
    let running = Service::new("orders", bus.clone())
        .on("orders.place", |order: PlaceOrder| async move {
            let state = if order.quantity > 10 {
                OrderState::OnHold
            } else {
                OrderState::Accepted
            };
            Ok::<_, String>(Receipt {
                order_id: 7,
                total_cents: 250 * order.quantity,
                state,
                lines: vec![Line {
                    item: order.item,
                    unit_cents: 250,
                }],
                note: order
                    .gift_wrap
                    .filter(|wrap| *wrap)
                    .map(|_| "wrapped".to_owned()),
            })
        })
        .start()
        .await
        .unwrap();
    let types = Types::new()
        .call::<PlaceOrder, Receipt>("orders.place")
        .events::<Settled>("orders.settled");
    let gateway = Gateway::with_types(bus.clone(), &settings, &types).unwrap();
    let sdl = gateway.sdl();
    assert!(
        sdl.contains("orders_place(input: PlaceOrder!): Receipt!"),
        "{sdl}"
    );
    assert!(sdl.contains("totalCents: Int!"), "{sdl}");
    assert!(sdl.contains("ON_HOLD"), "{sdl}");
    let url = serve(&gateway).await;

    let query = r#"{ orders_place(input: {item: "tea", quantity: 12, giftWrap: true}) {
        orderId totalCents state note lines { item unitCents } } }"#;
    let (status, answer) = post(&url, None, json!({ "query": query })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"]["orders_place"],
        json!({"orderId": 7, "totalCents": 3000, "state": "ON_HOLD", "note": "wrapped",
               "lines": [{"item": "tea", "unitCents": 250}]}),
        "{answer}"
    );
    // Only what is selected comes back.
    let (_, answer) = post(
        &url,
        None,
        json!({ "query": r#"{ orders_place(input: {item: "pen", quantity: 1}) { state } }"# }),
    )
    .await;
    assert_eq!(
        answer["data"]["orders_place"],
        json!({"state": "ACCEPTED"}),
        "{answer}"
    );
    // A wrong input is a GraphQL validation error; no call is made.
    let (_, answer) = post(
        &url,
        None,
        json!({ "query": r#"{ orders_place(input: {item: "pen", quantity: "many"}) { state } }"# }),
    )
    .await;
    assert!(answer["data"].is_null(), "{answer}");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("quantity"),
        "{answer}"
    );

    // A typed subscription: the payload is selected like any object.
    let mut socket = websocket(&url).await;
    socket
        .send(WsMessage::text(
            json!({"type": "connection_init"}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { orders_settled { subject payload { orderId state } } }"}});
    socket
        .send(WsMessage::text(subscribe.to_string()))
        .await
        .unwrap();
    let event = loop {
        bus.publish_json(
            "orders.settled",
            &Settled {
                order_id: 7,
                state: OrderState::Accepted,
            },
        )
        .await
        .unwrap();
        match tokio::time::timeout(Duration::from_millis(200), next_json(&mut socket)).await {
            Ok(message) => break message,
            Err(_) => continue,
        }
    };
    assert_eq!(
        event["payload"]["data"]["orders_settled"],
        json!({"subject": "orders.settled", "payload": {"orderId": 7, "state": "ACCEPTED"}}),
        "{event}"
    );

    // Types for a subject no route exposes that way are a configuration error.
    let wrong = Types::new().call::<PlaceOrder, Receipt>("orders.settled");
    let err = Gateway::with_types(bus.clone(), &settings, &wrong)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("orders.settled"), "{err}");
    assert!(running.shutdown().await.is_clean());
}

crate::tests!(
    queries_and_mutations_reach_the_services,
    typed_fields_follow_the_handlers_types,
    strangers_and_hostile_requests_are_refused,
    misconfigured_routes_fail_at_build,
    a_subscription_streams_events_another_service_publishes,
);
