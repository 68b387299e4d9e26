//! The shop's three services and its client, written once against switchboard.
//!
//! Order flow (every arrow is `Router::dispatch`, so configuration decides
//! whether it is a request or an event):
//!
//! ```text
//! client ─orders.place─▶ orders ─inventory.reserve─▶ inventory ─payments.charge─▶ payments
//!                          ▲                            │   ▲                          │
//!                          └──────── orders.settle ─────┘   └──── inventory.release ───┤
//!                          └──────────────────────── orders.settle ────────────────────┘
//! ```
//!
//! `orders` publishes `orders.settled` once an order is final; queries
//! (`*.report`) are always requests, since a query needs its answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{Dispatched, Router, RunningService, Service, Settings};

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

async fn forward(router: &Router, subject: &str, payload: &impl Serialize) -> Result<Ack, String> {
    match router.dispatch::<_, Ack>(subject, payload).await {
        Ok(Dispatched::Replied(ack)) => Ok(ack),
        Ok(Dispatched::Accepted) => Ok(Ack),
        Err(err) => Err(format!("{subject}: {err}")),
    }
}

async fn start_orders(
    router: Router,
) -> switchboard::Result<(RunningService, Shared<BTreeMap<u32, OrderStatus>>)> {
    let orders: Shared<BTreeMap<u32, OrderStatus>> = Shared::default();
    let (placing, settling, listing) = (orders.clone(), orders.clone(), orders.clone());
    let (place_router, settle_router) = (router.clone(), router.clone());
    let running = Service::new("orders", router)
        .on_command("orders.place", move |order: PlaceOrder| {
            let (orders, router) = (placing.clone(), place_router.clone());
            async move {
                tracing::info!(service = "orders", order_id = order.order_id, customer = %order.customer, "order received");
                orders.lock().unwrap().insert(order.order_id, OrderStatus::Pending);
                let reserve = Reserve {
                    order_id: order.order_id,
                    customer: order.customer,
                    item: order.item,
                    quantity: order.quantity,
                };
                forward(&router, "inventory.reserve", &reserve).await
            }
        })
        .on_command("orders.settle", move |settle: Settle| {
            let (orders, router) = (settling.clone(), settle_router.clone());
            async move {
                tracing::info!(service = "orders", order_id = settle.order_id, status = ?settle.status, "order settled");
                orders.lock().unwrap().insert(settle.order_id, settle.status.clone());
                // A notification, not a command: always an event.
                router
                    .bus_for("orders.settled")
                    .publish_json("orders.settled", &settle)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok::<_, String>(Ack)
            }
        })
        .on_request("orders.report", move |_: ()| {
            let orders = listing.clone();
            async move { Ok::<_, String>(orders.lock().unwrap().clone()) }
        })
        .start()
        .await?;
    Ok((running, orders))
}

async fn start_inventory(router: Router) -> switchboard::Result<RunningService> {
    let stock: Shared<BTreeMap<String, u32>> = Arc::new(Mutex::new(BTreeMap::from([
        ("tea".into(), 5),
        ("coffee".into(), 2),
        ("cake".into(), 0),
    ])));
    let (reserving, releasing, reporting) = (stock.clone(), stock.clone(), stock);
    let reserve_router = router.clone();
    Service::new("inventory", router)
        .on_command("inventory.reserve", move |reserve: Reserve| {
            let (stock, router) = (reserving.clone(), reserve_router.clone());
            async move {
                let reserved = {
                    let mut stock = stock.lock().unwrap();
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
                    return forward(&router, "orders.settle", &settle).await;
                }
                let charge = Charge {
                    order_id: reserve.order_id,
                    amount: price(&reserve.item) * reserve.quantity,
                    customer: reserve.customer,
                    item: reserve.item,
                    quantity: reserve.quantity,
                };
                forward(&router, "payments.charge", &charge).await
            }
        })
        .on_command("inventory.release", move |release: Release| {
            let stock = releasing.clone();
            async move {
                tracing::info!(service = "inventory", order_id = release.order_id, item = %release.item, "stock released");
                *stock.lock().unwrap().entry(release.item).or_default() += release.quantity;
                Ok::<_, String>(Ack)
            }
        })
        .on_request("inventory.report", move |_: ()| {
            let stock = reporting.clone();
            async move { Ok::<_, String>(stock.lock().unwrap().clone()) }
        })
        .start()
        .await
}

async fn start_payments(router: Router) -> switchboard::Result<RunningService> {
    let balances: Shared<BTreeMap<String, u32>> = Arc::new(Mutex::new(BTreeMap::from([
        ("ada".into(), 20),
        ("bob".into(), 4),
    ])));
    let (charging, reporting) = (balances.clone(), balances);
    let charge_router = router.clone();
    Service::new("payments", router)
        .on_command("payments.charge", move |charge: Charge| {
            let (balances, router) = (charging.clone(), charge_router.clone());
            async move {
                let paid = {
                    let mut balances = balances.lock().unwrap();
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
                let status = if paid {
                    OrderStatus::Confirmed
                } else {
                    let release = Release {
                        order_id: charge.order_id,
                        item: charge.item,
                        quantity: charge.quantity,
                    };
                    forward(&router, "inventory.release", &release).await?;
                    OrderStatus::Rejected("payment declined".into())
                };
                let settle = Settle {
                    order_id: charge.order_id,
                    status,
                };
                forward(&router, "orders.settle", &settle).await
            }
        })
        .on_request("payments.report", move |_: ()| {
            let balances = reporting.clone();
            async move { Ok::<_, String>(balances.lock().unwrap().clone()) }
        })
        .start()
        .await
}

/// A query needs its answer, so it is always a request, whatever the route's style.
async fn query<T: serde::de::DeserializeOwned>(
    router: &Router,
    subject: &str,
) -> switchboard::Result<T> {
    router.bus_for(subject).request_json(subject, &()).await
}

/// Starts the three services, places `orders` one after another (each waits
/// for its `orders.settled` event), and returns the report. `settings` gives
/// each service's settings by name (`orders`, `inventory`, `payments`, `client`).
pub async fn run(
    orders: &[PlaceOrder],
    settings: impl Fn(&str) -> switchboard::Result<Settings>,
) -> Result<ShopReport, Box<dyn std::error::Error + Send + Sync>> {
    let orders_router = settings("orders")?.connect("orders").await?;
    let inventory_router = settings("inventory")?.connect("inventory").await?;
    let payments_router = settings("payments")?.connect("payments").await?;
    let client = settings("client")?.connect("client").await?;
    let (orders_service, _) = start_orders(orders_router.clone()).await?;
    let inventory_service = start_inventory(inventory_router.clone()).await?;
    let payments_service = start_payments(payments_router.clone()).await?;

    let mut settled = client
        .bus_for("orders.settled")
        .subscribe("orders.settled")
        .await?;
    for order in orders {
        tracing::info!(service = "client", order_id = order.order_id, style = %client.decide("orders.place").style, "placing order");
        forward(&client, "orders.place", order).await?;
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

    let report = ShopReport {
        orders: query(&client, "orders.report").await?,
        stock: query(&client, "inventory.report").await?,
        balances: query(&client, "payments.report").await?,
    };
    drop(settled);
    for service in [orders_service, inventory_service, payments_service] {
        service.shutdown().await;
    }
    for router in [client, orders_router, inventory_router, payments_router] {
        router.close().await?;
    }
    Ok(report)
}
