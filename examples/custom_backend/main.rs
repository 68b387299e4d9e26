//! A backend from outside the crate, selected by URL like the built-in ones:
//!
//! ```text
//! cargo run --example custom_backend
//! ```
//!
//! `tests/example_custom_backend.rs` runs the whole conformance suite through it.

mod adapter;

use std::sync::atomic::Ordering;

use switchboard::Service;

async fn greet(name: String) -> Result<String, String> {
    Ok(format!("hello, {name}"))
}

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    adapter::register()?;
    let bus = switchboard::connect("counting://demo").await?;
    let running = Service::new("greeter", bus.clone())
        .on("greet", greet)
        .start()
        .await?;
    let reply: String = bus.request_json("greet", "ada").await?;
    println!(
        "{reply} (sent through counting://: {})",
        adapter::SENT.load(Ordering::Relaxed)
    );
    running.shutdown().await;
    bus.close().await
}
