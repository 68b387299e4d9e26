//! The shop's three services with a GraphQL gateway in front (feature `graphql`).
//!
//! The gateway exposes what its route table marks, nothing else: placing an
//! order as a mutation, the three reports as queries, and `orders.settled`
//! as a subscription. A GraphQL client — this example itself, over loopback
//! HTTP and a `graphql-transport-ws` WebSocket — subscribes, places the
//! sample orders, waits for each to settle, reads all three reports in *one*
//! query, and checks the business result is the shop's expected one.
//!
//! ```text
//! cargo run --example shop_graphql --features graphql
//! cargo run --example shop_graphql --features graphql -- --serve 127.0.0.1:8080   # keep serving
//! curl -s 127.0.0.1:8080/graphql -H 'content-type: application/json' \
//!      -d '{"query":"{ orders_report inventory_report payments_report }"}'
//! ```
//!
//! The services and the gateway read their settings as every example does
//! (`Settings::load`: `SWITCHBOARD_CONFIG`, `SWITCHBOARD_URL[_<SERVICE>]`,
//! `SWITCHBOARD_STYLE`); the gateway's routes below are added to its own.

#[path = "shop/shop.rs"]
#[allow(dead_code)] // The shop example's client half is not used here.
mod shop;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::graphql::Gateway;
use switchboard::Settings;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the gateway exposes, as routes (the same keys work in a settings file).
const GATEWAY_ROUTES: &str = r#"
    [[routes]]
    subjects = "orders.place"
    graphql = "mutation"

    [[routes]]
    subjects = "orders.report"
    graphql = "query"

    [[routes]]
    subjects = "inventory.report"
    graphql = "query"

    [[routes]]
    subjects = "payments.report"
    graphql = "query"

    [[routes]]
    subjects = "orders.settled"
    graphql = "subscription"
"#;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve_on = match args.as_slice() {
        [] => None,
        [flag, address] if flag == "--serve" => Some(address.clone()),
        _ => {
            eprintln!("usage: shop_graphql [--serve ADDRESS]");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(serve_on).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(serve_on: Option<String>) -> Result<(), BoxError> {
    let running = [
        shop::start_orders(Settings::load("orders")?.connect().await?).await?,
        shop::start_inventory(Settings::load("inventory")?.connect().await?).await?,
        shop::start_payments(Settings::load("payments")?.connect().await?).await?,
    ];
    let mut settings = Settings::load("gateway")?;
    // Appended: a route the loaded settings already have still decides the style.
    settings
        .routes
        .extend(Settings::from_toml(GATEWAY_ROUTES)?.routes);
    let gateway = Gateway::new(settings.connect().await?, &settings)?;
    let listener =
        tokio::net::TcpListener::bind(serve_on.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let app = gateway.router();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("GraphQL gateway on {url}; it exposes:");
    for field in gateway.fields() {
        println!("  {:?} {} ({})", field.exposure, field.name, field.subject);
    }
    if serve_on.is_some() {
        server.await??;
        return Ok(());
    }

    let report = client(&url).await?;
    for service in running {
        let shutdown = service.shutdown().await;
        if !shutdown.is_clean() {
            return Err(format!(
                "a service stopped with events lost or left unacknowledged: {shutdown}"
            )
            .into());
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report != shop::expected_report() {
        return Err("the business result differs from the expected one".into());
    }
    println!("the business result is the expected one");
    Ok(())
}

/// A GraphQL client of the shop: subscribe, place orders, read the reports.
async fn client(url: &str) -> Result<shop::ShopReport, BoxError> {
    let mut request = url.replacen("http://", "ws://", 1).into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket
        .send(WsMessage::text(
            json!({"type": "connection_init"}).to_string(),
        ))
        .await?;
    expect_message(&mut socket, "connection_ack").await?;
    let subscribe = json!({"id": "settled", "type": "subscribe", "payload": {
        "query": "subscription { orders_settled { payload } }"}});
    socket.send(WsMessage::text(subscribe.to_string())).await?;
    // The subscription is live once the server has subscribed on the bus:
    // give it a moment (an event published before would not be seen).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = reqwest::Client::new();
    for order in shop::sample_orders() {
        let placed = graphql(
            &http,
            url,
            "mutation Place($order: JSON) { orders_place(input: $order) }",
            json!({ "order": order }),
        )
        .await?;
        println!(
            "order {}: orders_place -> {}",
            order.order_id, placed["orders_place"]
        );
        loop {
            let next = expect_message(&mut socket, "next").await?;
            let settled = &next["payload"]["data"]["orders_settled"]["payload"];
            if settled["order_id"] == order.order_id {
                println!("order {}: settled {}", order.order_id, settled["status"]);
                break;
            }
        }
    }
    // Three services' reports in one round trip: what a gateway is for.
    let reports = graphql(
        &http,
        url,
        "{ orders_report inventory_report payments_report }",
        Value::Null,
    )
    .await?;
    Ok(shop::ShopReport {
        orders: serde_json::from_value(reports["orders_report"].clone())?,
        stock: serde_json::from_value(reports["inventory_report"].clone())?,
        balances: serde_json::from_value(reports["payments_report"].clone())?,
    })
}

/// One GraphQL operation over HTTP; its `data`, or its errors as an error.
async fn graphql(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> Result<Value, BoxError> {
    let answer: Value = http
        .post(url)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    match answer.get("errors") {
        Some(errors) => Err(format!("{query}: {errors}").into()),
        None => Ok(answer["data"].clone()),
    }
}

/// The next protocol message, which must be of type `kind` (pings are skipped).
async fn expect_message<S>(socket: &mut S, kind: &str) -> Result<Value, BoxError>
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .map_err(|_| format!("no `{kind}` message within 30 s"))?
            .ok_or("the gateway closed the WebSocket")??;
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let message: Value = serde_json::from_str(&text)?;
        match message["type"].as_str() {
            Some("ping") => continue,
            Some(found) if found == kind => return Ok(message),
            _ => return Err(format!("expected `{kind}`, got {message}").into()),
        }
    }
}
