//! The typed paths users call, as the allocation test
//! (`tests/observe_allocations.rs`) and the instruction counter
//! (`examples/instructions/`) both run them: a 128-byte `Order`, and a
//! typed `Service` that echoes orders and counts handled ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard::service::RunningService;
use switchboard::{Bus, Service};

/// A typed payload of 128 bytes as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub note: String,
}

/// The order every path sends.
pub fn order() -> Order {
    Order {
        id: 42,
        note: "x".repeat(108),
    }
}

/// A typed service on `bus`: `PREFIX.echo` answers with the order, and
/// `PREFIX.placed` counts handled events into the returned counter.
pub async fn typed_service(
    bus: &Bus,
    prefix: &str,
) -> switchboard::Result<(RunningService, Arc<AtomicUsize>)> {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let running = Service::new("typed-paths", bus.clone())
        .on(format!("{prefix}.echo"), |order: Order| async move {
            Ok::<_, String>(order)
        })
        .on(format!("{prefix}.placed"), move |order: Order| {
            let counter = counter.clone();
            async move {
                std::hint::black_box(order);
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(())
            }
        })
        .start()
        .await?;
    Ok((running, handled))
}
