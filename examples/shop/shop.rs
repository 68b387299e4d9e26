//! The shop's three services and its client, written once against switchboard.
//!
//! Order flow (every arrow is `Bus::send`, so configuration decides whether
//! it is a request or an event; every handler is one plain async fn that
//! serves both):
//!
//! ```text
//! client ─orders.place─▶ orders ─inventory.reserve─▶ inventory ─payments.charge─▶ payments
//!                          ▲                            │   ▲                          │
//!                          ├──────── orders.settle ─────┘   └──── inventory.release ───┤
//!                          │   (out of stock; or declined, once the stock is back)     │
//!                          └──────────────────────── orders.settle ────────────────────┘
//!                                                     (confirmed)
//! ```
//!
//! A declined payment is settled by `inventory` after it has put the stock
//! back, not by `payments`: in the asynchronous style nothing orders two
//! events on different subjects, so settling first would let the next order
//! see the stock still taken.
//!
//! `orders` publishes `orders.settled` once an order is final; queries
//! (`*.report`) are always requests, since a query needs its answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::handler::{Json, Rejection, State};
use switchboard::service::{RunningService, ShutdownReport};
use switchboard::{Bus, Sent, Service, Settings};

/// One order the client places.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: u32,
    pub customer: String,
    pub item: String,
    pub quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reserve {
    order_id: u32,
    customer: String,
    item: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    order_id: u32,
    customer: String,
    item: String,
    quantity: u32,
    amount: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Release {
    order_id: u32,
    item: String,
    quantity: u32,
}

/// The final state of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settle {
    order_id: u32,
    status: OrderStatus,
}

/// What a command handler answers: an acknowledgement; results travel on as commands.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ack;

/// The business result: what every backend and style must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopReport {
    pub orders: BTreeMap<u32, OrderStatus>,
    pub stock: BTreeMap<String, u32>,
    pub balances: BTreeMap<String, u32>,
}

/// The orders the client places, in order: confirmed, confirmed, declined
/// payment (stock released), out of stock, too few left, and one that only
/// succeeds because the declined order's stock came back.
pub fn sample_orders() -> Vec<PlaceOrder> {
    [
        (1, "ada", "tea", 2),
        (2, "bob", "coffee", 1),
        (3, "bob", "tea", 1),
        (4, "ada", "cake", 1),
        (5, "ada", "coffee", 2),
        (6, "ada", "tea", 3),
    ]
    .into_iter()
    .map(|(order_id, customer, item, quantity)| PlaceOrder {
        order_id,
        customer: customer.into(),
        item: item.into(),
        quantity,
    })
    .collect()
}

/// The report `sample_orders` must produce, whatever the backend and style.
pub fn expected_report() -> ShopReport {
    let rejected = |why: &str| OrderStatus::Rejected(why.into());
    ShopReport {
        orders: BTreeMap::from([
            (1, OrderStatus::Confirmed),
            (2, OrderStatus::Confirmed),
            (3, rejected("payment declined")),
            (4, rejected("out of stock")),
            (5, rejected("out of stock")),
            (6, OrderStatus::Confirmed),
        ]),
        stock: BTreeMap::from([("cake".into(), 0), ("coffee".into(), 1), ("tea".into(), 0)]),
        balances: BTreeMap::from([("ada".into(), 5), ("bob".into(), 0)]),
    }
}

fn price(item: &str) -> u32 {
    match item {
        "tea" => 3,
        "coffee" => 4,
        _ => 5,
    }
}

type Shared<T> = Arc<Mutex<T>>;

/// Each service's own records, injected once with `Service::state`.
#[derive(Clone, Default)]
struct Orders(Shared<BTreeMap<u32, OrderStatus>>);
#[derive(Clone)]
struct Stock(Shared<BTreeMap<String, u32>>);
#[derive(Clone)]
struct Balances(Shared<BTreeMap<String, u32>>);

/// Sends a command in whatever style the route is configured for.
async fn forward(bus: &Bus, subject: &str, payload: &impl Serialize) -> Result<Ack, Rejection> {
    match bus.send::<_, Ack>(subject, payload).await? {
        Sent::Replied(ack) => Ok(ack),
        // Published (async route, or a sync one whose responder was away): handled later.
        Sent::Accepted | Sent::Deferred(_) => Ok(Ack),
    }
}

async fn place_order(
    order: PlaceOrder,
    State(orders): State<Orders>,
    State(bus): State<Bus>,
) -> Result<Ack, Rejection> {
    tracing::info!(service = "orders", order_id = order.order_id, customer = %order.customer, "order received");
    orders
        .0
        .lock()
        .unwrap()
        .insert(order.order_id, OrderStatus::Pending);
    let reserve = Reserve {
        order_id: order.order_id,
        customer: order.customer,
        item: order.item,
        quantity: order.quantity,
    };
    forward(&bus, "inventory.reserve", &reserve).await
}

async fn settle_order(
    settle: Settle,
    State(orders): State<Orders>,
    State(bus): State<Bus>,
) -> Result<Ack, Rejection> {
    tracing::info!(service = "orders", order_id = settle.order_id, status = ?settle.status, "order settled");
    orders
        .0
        .lock()
        .unwrap()
        .insert(settle.order_id, settle.status.clone());
    // A notification, not a command: always an event.
    bus.publish_json("orders.settled", &settle).await?;
    Ok(Ack)
}

async fn list_orders(_: (), State(orders): State<Orders>) -> Json<BTreeMap<u32, OrderStatus>> {
    Json(orders.0.lock().unwrap().clone())
}

/// The orders service (`orders.place`, `orders.settle`, `orders.report`).
pub fn orders_service(bus: Bus) -> Service {
    Service::new("orders", bus.clone())
        .state(Orders::default())
        .state(bus)
        .on("orders.place", place_order)
        .on("orders.settle", settle_order)
        .on("orders.report", list_orders)
}

/// Starts the orders service.
pub async fn start_orders(bus: Bus) -> switchboard::Result<RunningService> {
    orders_service(bus).start().await
}

async fn reserve_stock(
    reserve: Reserve,
    State(stock): State<Stock>,
    State(bus): State<Bus>,
) -> Result<Ack, Rejection> {
    let reserved = {
        let mut stock = stock.0.lock().unwrap();
        let left = stock.entry(reserve.item.clone()).or_default();
        let ok = *left >= reserve.quantity;
        if ok {
            *left -= reserve.quantity;
        }
        ok
    };
    tracing::info!(service = "inventory", order_id = reserve.order_id, item = %reserve.item, reserved, "reservation");
    if !reserved {
        let settle = Settle {
            order_id: reserve.order_id,
            status: OrderStatus::Rejected("out of stock".into()),
        };
        return forward(&bus, "orders.settle", &settle).await;
    }
    let charge = Charge {
        order_id: reserve.order_id,
        amount: price(&reserve.item) * reserve.quantity,
        customer: reserve.customer,
        item: reserve.item,
        quantity: reserve.quantity,
    };
    forward(&bus, "payments.charge", &charge).await
}

/// Puts a declined order's stock back, then settles the order as declined.
async fn release_stock(
    release: Release,
    State(stock): State<Stock>,
    State(bus): State<Bus>,
) -> Result<Ack, Rejection> {
    tracing::info!(service = "inventory", order_id = release.order_id, item = %release.item, "stock released");
    *stock.0.lock().unwrap().entry(release.item).or_default() += release.quantity;
    let settle = Settle {
        order_id: release.order_id,
        status: OrderStatus::Rejected("payment declined".into()),
    };
    forward(&bus, "orders.settle", &settle).await
}

async fn list_stock(_: (), State(stock): State<Stock>) -> Json<BTreeMap<String, u32>> {
    Json(stock.0.lock().unwrap().clone())
}

/// The inventory service (`inventory.reserve`, `inventory.release`, `inventory.report`).
pub fn inventory_service(bus: Bus) -> Service {
    let stock = Stock(Arc::new(Mutex::new(BTreeMap::from([
        ("tea".into(), 5),
        ("coffee".into(), 2),
        ("cake".into(), 0),
    ]))));
    Service::new("inventory", bus.clone())
        .state(stock)
        .state(bus)
        .on("inventory.reserve", reserve_stock)
        .on("inventory.release", release_stock)
        .on("inventory.report", list_stock)
}

/// Starts the inventory service.
pub async fn start_inventory(bus: Bus) -> switchboard::Result<RunningService> {
    inventory_service(bus).start().await
}

async fn charge(
    charge: Charge,
    State(balances): State<Balances>,
    State(bus): State<Bus>,
) -> Result<Ack, Rejection> {
    let paid = {
        let mut balances = balances.0.lock().unwrap();
        let balance = balances.entry(charge.customer.clone()).or_default();
        let ok = *balance >= charge.amount;
        if ok {
            *balance -= charge.amount;
        }
        ok
    };
    tracing::info!(
        service = "payments",
        order_id = charge.order_id,
        amount = charge.amount,
        paid,
        "charge"
    );
    if !paid {
        // `inventory` settles the order once the stock is back.
        let release = Release {
            order_id: charge.order_id,
            item: charge.item,
            quantity: charge.quantity,
        };
        return forward(&bus, "inventory.release", &release).await;
    }
    let settle = Settle {
        order_id: charge.order_id,
        status: OrderStatus::Confirmed,
    };
    forward(&bus, "orders.settle", &settle).await
}

async fn list_balances(_: (), State(balances): State<Balances>) -> Json<BTreeMap<String, u32>> {
    Json(balances.0.lock().unwrap().clone())
}

/// The payments service (`payments.charge`, `payments.report`).
pub fn payments_service(bus: Bus) -> Service {
    let balances = Balances(Arc::new(Mutex::new(BTreeMap::from([
        ("ada".into(), 20),
        ("bob".into(), 4),
    ]))));
    Service::new("payments", bus.clone())
        .state(balances)
        .state(bus)
        .on("payments.charge", charge)
        .on("payments.report", list_balances)
}

/// Starts the payments service.
pub async fn start_payments(bus: Bus) -> switchboard::Result<RunningService> {
    payments_service(bus).start().await
}

/// A query needs its answer, so it is always a request, whatever the route's style.
async fn query<T: serde::de::DeserializeOwned>(bus: &Bus, subject: &str) -> switchboard::Result<T> {
    bus.request_json(subject, &()).await
}

/// Places `orders` one after another through `client` (each waits for its
/// `orders.settled` event) and returns the report the three services give.
pub async fn place_and_report(
    client: &Bus,
    orders: &[PlaceOrder],
) -> Result<ShopReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut settled = client.subscribe("orders.settled").await?;
    for order in orders {
        tracing::info!(service = "client", order_id = order.order_id, style = %client.route("orders.place").style, "placing order");
        forward(client, "orders.place", order)
            .await
            .map_err(|err| format!("orders.place: {err}"))?;
        // Wait for this order to be final before the next: the result must not depend on timing.
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), settled.next())
                .await
                .map_err(|_| format!("order {} never settled", order.order_id))?
                .ok_or("the orders.settled subscription ended")?;
            let settle: Settle = next.decode_json()?;
            if settle.order_id == order.order_id {
                break;
            }
        }
    }
    Ok(ShopReport {
        orders: query(client, "orders.report").await?,
        stock: query(client, "inventory.report").await?,
        balances: query(client, "payments.report").await?,
    })
}

/// Waits until every service answers its report query (a mesh client has
/// learned where they are), up to `within`.
pub async fn wait_for_services(client: &Bus, within: Duration) -> switchboard::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    for subject in ["orders.report", "inventory.report", "payments.report"] {
        loop {
            match client
                .request_json::<_, serde_json::Value>(subject, &())
                .await
            {
                Ok(_) => break,
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Starts the three services, places `orders` one after another (each waits
/// for its `orders.settled` event), and returns the report. `settings` gives
/// each service's settings by name (`orders`, `inventory`, `payments`, `client`).
pub async fn run(
    orders: &[PlaceOrder],
    settings: impl Fn(&str) -> switchboard::Result<Settings>,
) -> Result<ShopReport, Box<dyn std::error::Error + Send + Sync>> {
    let orders_bus = settings("orders")?.connect().await?;
    let inventory_bus = settings("inventory")?.connect().await?;
    let payments_bus = settings("payments")?.connect().await?;
    let client = settings("client")?.connect().await?;
    let orders_service = start_orders(orders_bus.clone()).await?;
    let inventory_service = start_inventory(inventory_bus.clone()).await?;
    let payments_service = start_payments(payments_bus.clone()).await?;

    let report = place_and_report(&client, orders).await?;
    for service in [orders_service, inventory_service, payments_service] {
        let shutdown: ShutdownReport = service.shutdown().await;
        if !shutdown.is_clean() {
            return Err(format!(
                "a service stopped with events lost or left unacknowledged: {shutdown}"
            )
            .into());
        }
    }
    for bus in [client, orders_bus, inventory_bus, payments_bus] {
        bus.close().await?;
    }
    Ok(report)
}
