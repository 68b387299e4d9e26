//! Two services and a client, written once; configuration alone (read by
//! `Settings::load`) picks the backend and the style:
//!
//! - `orders` handles `orders.place` and publishes `orders.placed`;
//! - `shipping` handles `orders.placed`;
//! - a client sends `orders.place` with `Bus::send`: on a sync route it waits
//!   for the receipt (and sees a refusal as an error with its code), on an
//!   async route it returns once the order is accepted (and a refused order
//!   ends in the dead-letter subject after its retries).
//!
//! ```text
//! cargo run --example quickstart
//! SWITCHBOARD_STYLE=async cargo run --example quickstart
//! SWITCHBOARD_CONFIG=examples/quickstart-nats.toml cargo run --example quickstart --features nats
//! SWITCHBOARD_URL=nats://127.0.0.1:4222 cargo run --example quickstart --features nats
//! SWITCHBOARD_URL_ORDERS=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_SHIPPING=http://127.0.0.1:7002?peers=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_CLIENT=http://127.0.0.1:7003?peers=http://127.0.0.1:7001 \
//!   cargo run --example quickstart --features http
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::handler::{Rejection, State};
use switchboard::service::EventPolicy;
use switchboard::{Bus, Sent, Service, Settings, Style};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Serialize, Deserialize)]
struct PlaceOrder {
    item: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order_id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: u64,
    item: String,
    quantity: u32,
}

/// Serves `orders.place` in both styles: a request gets the receipt, an event is handled.
async fn place(order: PlaceOrder, State(bus): State<Bus>) -> Result<Receipt, Rejection> {
    if order.quantity == 0 {
        return Err(Rejection::new("quantity must be at least 1").with_code("invalid_quantity"));
    }
    let order_id = 1001;
    tracing::info!(order_id, item = %order.item, "orders: order placed");
    let placed = OrderPlaced {
        order_id,
        item: order.item,
        quantity: order.quantity,
    };
    bus.publish_json("orders.placed", &placed).await?;
    Ok(Receipt { order_id })
}

async fn ship(placed: OrderPlaced, State(shipped): State<UnboundedSender<OrderPlaced>>) {
    tracing::info!(order_id = placed.order_id, "shipping: preparing parcel");
    let _ = shipped.send(placed);
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Each service loads its own settings and gets its own connection, as separate processes would.
    let client_settings = Settings::load("client")?;
    let client = client_settings.connect().await?;
    let style = client.route("orders.place").style;
    println!(
        "switchboard quickstart on {} ({} backend), orders.place is {style}",
        client_settings
            .transports
            .get("default")
            .map_or("memory://", |t| t.url.as_str()),
        client.backend(),
    );

    let orders_bus = Settings::load("orders")?.connect().await?;
    let orders = Service::new("orders", orders_bus.clone())
        .state(orders_bus.clone())
        .event_policy(EventPolicy::default().max_attempts(3))
        .on("orders.place", place)
        .start()
        .await?;

    let shipping_bus = Settings::load("shipping")?.connect().await?;
    let (shipped_tx, mut shipped_rx) = tokio::sync::mpsc::unbounded_channel::<OrderPlaced>();
    let shipping = Service::new("shipping", shipping_bus.clone())
        .state(shipped_tx)
        .on_ordered("orders.placed", ship)
        .start()
        .await?;

    let mut dead_letters = client.subscribe("dead-letter.orders").await?;
    let order = PlaceOrder {
        item: "tea".into(),
        quantity: 2,
    };
    match client.send::<_, Receipt>("orders.place", &order).await? {
        Sent::Replied(receipt) => println!("sync: order #{} placed", receipt.order_id),
        Sent::Accepted => println!("async: order accepted; its outcome travels on as events"),
    }

    let empty = PlaceOrder {
        item: "tea".into(),
        quantity: 0,
    };
    match client.send::<_, Receipt>("orders.place", &empty).await {
        Err(err) if style == Style::Sync => println!(
            "sync: the refusal reaches the caller: {err} [code: {}]",
            err.code().unwrap_or("none")
        ),
        Ok(Sent::Accepted) if style == Style::Async => {
            let letter = tokio::time::timeout(Duration::from_secs(30), dead_letters.next())
                .await
                .map_err(|_| "the refused order never reached dead-letter.orders")?
                .ok_or("the dead-letter subscription ended")?;
            println!(
                "async: the refused order was dead-lettered after {} attempts: {}",
                letter
                    .headers()
                    .get("sb-dead-letter-attempts")
                    .unwrap_or("?"),
                letter.headers().get("sb-dead-letter-error").unwrap_or("?"),
            );
        }
        other => return Err(format!("an empty order was not refused: {other:?}").into()),
    }

    let placed = tokio::time::timeout(Duration::from_secs(10), shipped_rx.recv())
        .await
        .map_err(|_| "shipping never saw the orders.placed event")?
        .ok_or("shipping stopped")?;
    println!(
        "publish/subscribe: shipping received order #{} ({} x {})",
        placed.order_id, placed.quantity, placed.item
    );

    drop(dead_letters);
    for report in [orders.shutdown().await, shipping.shutdown().await] {
        if !report.is_clean() {
            return Err(format!("events lost at shutdown: {report}").into());
        }
    }
    for bus in [client, orders_bus, shipping_bus] {
        bus.close().await?;
    }
    println!("done");
    Ok(())
}
