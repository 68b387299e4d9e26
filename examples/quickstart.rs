//! Two services and a client, written once, run on whatever `SWITCHBOARD_URL` names
//! (default `memory://`), or per service `SWITCHBOARD_URL_ORDERS`,
//! `SWITCHBOARD_URL_SHIPPING`, `SWITCHBOARD_URL_CLIENT`:
//!
//! - `orders` answers `orders.place` requests (synchronous style) and publishes
//!   `orders.placed` events (asynchronous style);
//! - `shipping` handles `orders.placed` events;
//! - a client places an order, sees a handler error, and waits for shipping.
//!
//! ```text
//! cargo run --example quickstart
//! SWITCHBOARD_URL=nats://127.0.0.1:4222 cargo run --example quickstart --features nats
//! SWITCHBOARD_URL_ORDERS=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_SHIPPING=http://127.0.0.1:7002?peers=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_CLIENT=http://127.0.0.1:7003?peers=http://127.0.0.1:7001 \
//!   cargo run --example quickstart --features http
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{Config, Service};

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
    println!(
        "switchboard quickstart on {}",
        Config::for_service("orders")?.url
    );

    // Service 1: orders. Each service gets its own connection, as separate processes would.
    let orders_bus = Config::for_service("orders")?.connect().await?;
    let events = orders_bus.clone();
    let orders = Service::new("orders", orders_bus.clone())
        .on_request("orders.place", move |order: PlaceOrder| {
            let events = events.clone();
            async move {
                if order.quantity == 0 {
                    return Err("quantity must be at least 1".to_owned());
                }
                let order_id = 1001;
                tracing::info!(order_id, item = %order.item, "orders: order placed");
                let placed = OrderPlaced {
                    order_id,
                    item: order.item,
                    quantity: order.quantity,
                };
                events
                    .publish_json("orders.placed", &placed)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Receipt { order_id })
            }
        })
        .start()
        .await?;

    // Service 2: shipping, reacting to events.
    let shipping_bus = Config::for_service("shipping")?.connect().await?;
    let (shipped_tx, mut shipped_rx) = tokio::sync::mpsc::unbounded_channel();
    let shipping = Service::new("shipping", shipping_bus.clone())
        .on_event("orders.placed", move |placed: OrderPlaced| {
            let shipped_tx = shipped_tx.clone();
            async move {
                tracing::info!(order_id = placed.order_id, "shipping: preparing parcel");
                shipped_tx.send(placed).map_err(|e| e.to_string())
            }
        })
        .start()
        .await?;

    // A client: request/reply, then the event it caused.
    let client = Config::for_service("client")?.connect().await?;
    let order = PlaceOrder {
        item: "tea".into(),
        quantity: 2,
    };
    let receipt: Receipt = client.request_json("orders.place", &order).await?;
    println!("request/reply: order #{} placed", receipt.order_id);

    let refused = client
        .request_json::<_, Receipt>(
            "orders.place",
            &PlaceOrder {
                item: "tea".into(),
                quantity: 0,
            },
        )
        .await;
    match refused {
        Err(err) => println!("handler error reaches the caller: {err}"),
        Ok(receipt) => return Err(format!("an empty order was accepted: {receipt:?}").into()),
    }

    let placed = tokio::time::timeout(Duration::from_secs(10), shipped_rx.recv())
        .await
        .map_err(|_| "shipping never saw the orders.placed event")?
        .ok_or("shipping stopped")?;
    println!(
        "publish/subscribe: shipping received order #{} ({} x {})",
        placed.order_id, placed.quantity, placed.item
    );

    orders.shutdown().await;
    shipping.shutdown().await;
    for bus in [client, orders_bus, shipping_bus] {
        bus.close().await?;
    }
    println!("done");
    Ok(())
}
