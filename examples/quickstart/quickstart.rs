//! The quickstart's services and client, written once against switchboard;
//! `main.rs` prints what happened, `tests/example_quickstart.rs` checks it on every
//! backend in every style.

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

/// What `orders` announces and `shipping` ships.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
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

/// What one run of the quickstart saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The client's default transport URL.
    pub url: String,
    /// The backend it ran on.
    pub backend: &'static str,
    /// The style configuration gave `orders.place`.
    pub style: Style,
    /// The receipt, when the route was sync.
    pub receipt: Option<u64>,
    /// What became of the refused (empty) order.
    pub refusal: Refusal,
    /// The order shipping received through `orders.placed`.
    pub shipped: u64,
}

/// What became of the refused order: the caller's error (sync) or a dead letter (async).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller got the handler's error with this code.
    Error {
        code: Option<String>,
        message: String,
    },
    /// The event was dead-lettered after this many attempts.
    DeadLettered { attempts: u32, reason: String },
}

/// `orders`: places an order (`orders.place`) and announces it (`orders.placed`).
pub fn orders_service(bus: Bus) -> Service {
    Service::new("orders", bus.clone())
        .state(bus)
        .event_policy(EventPolicy::default().max_attempts(3))
        .on("orders.place", place)
}

/// `shipping`: ships what was placed (`orders.placed`), in order.
pub fn shipping_service(bus: Bus, shipped: UnboundedSender<OrderPlaced>) -> Service {
    Service::new("shipping", bus)
        .state(shipped)
        .on_ordered("orders.placed", ship)
}

/// Runs the quickstart with each service's settings from `settings` (by
/// service name: `orders`, `shipping`, `client`), printing as it goes.
pub async fn run(
    settings: impl Fn(&str) -> switchboard::Result<Settings>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    // Each service loads its own settings and gets its own connection, as separate processes would.
    let orders_bus = settings("orders")?.connect().await?;
    let orders = orders_service(orders_bus.clone()).start().await?;

    let shipping_bus = settings("shipping")?.connect().await?;
    let (shipped_tx, mut shipped_rx) = tokio::sync::mpsc::unbounded_channel::<OrderPlaced>();
    let shipping = shipping_service(shipping_bus.clone(), shipped_tx)
        .start()
        .await?;

    // The client connects last, as a caller that starts after the services it
    // calls (on HTTP it learns their subscriptions from its seed when it connects).
    let client_settings = settings("client")?;
    let client = client_settings.connect().await?;
    let style = client.route("orders.place").style;
    let backend = client.backend();
    let url = client_settings
        .transports
        .get("default")
        .map_or("memory://", |t| t.url.as_str())
        .to_owned();
    println!("switchboard quickstart on {url} ({backend} backend), orders.place is {style}");

    // Operators watch the dead-letter subject; here the orders service's own connection does.
    let mut dead_letters = orders_bus.subscribe("dead-letter.orders").await?;
    let order = PlaceOrder {
        item: "tea".into(),
        quantity: 2,
    };
    let receipt = match client.send::<_, Receipt>("orders.place", &order).await? {
        Sent::Replied(receipt) => {
            println!("sync: order #{} placed", receipt.order_id);
            Some(receipt.order_id)
        }
        Sent::Accepted => {
            println!("async: order accepted; its outcome travels on as events");
            None
        }
        Sent::Deferred(deferred) => {
            println!(
                "sync, responder away: order {} published instead; its outcome goes to {}",
                deferred.id, deferred.outcomes
            );
            None
        }
    };

    let empty = PlaceOrder {
        item: "tea".into(),
        quantity: 0,
    };
    let refusal = match client.send::<_, Receipt>("orders.place", &empty).await {
        Err(err) if style == Style::Sync => {
            println!(
                "sync: the refusal reaches the caller: {err} [code: {}]",
                err.code().unwrap_or("none")
            );
            let code = err.code().map(str::to_owned);
            let message = match err {
                switchboard::Error::Remote { message, .. } => message,
                other => other.to_string(),
            };
            Refusal::Error { code, message }
        }
        Ok(Sent::Accepted) if style == Style::Async => {
            let letter = tokio::time::timeout(Duration::from_secs(30), dead_letters.next())
                .await
                .map_err(|_| "the refused order never reached dead-letter.orders")?
                .ok_or("the dead-letter subscription ended")?;
            let attempts = letter
                .headers()
                .get("sb-dead-letter-attempts")
                .unwrap_or("?");
            let reason = letter.headers().get("sb-dead-letter-error").unwrap_or("?");
            println!(
                "async: the refused order was dead-lettered after {attempts} attempts: {reason}"
            );
            Refusal::DeadLettered {
                attempts: attempts.parse().unwrap_or(0),
                reason: reason.to_owned(),
            }
        }
        other => return Err(format!("an empty order was not refused: {other:?}").into()),
    };

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
    Ok(Outcome {
        url,
        backend,
        style,
        receipt,
        refusal,
        shipped: placed.order_id,
    })
}
