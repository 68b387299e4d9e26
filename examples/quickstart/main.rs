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
//! cargo run -p quickstart
//! SWITCHBOARD_STYLE=async cargo run -p quickstart
//! SWITCHBOARD_CONFIG=examples/quickstart-nats.toml cargo run -p quickstart --features nats
//! SWITCHBOARD_URL=nats://127.0.0.1:4222 cargo run -p quickstart --features nats
//! SWITCHBOARD_URL_ORDERS=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_SHIPPING=http://127.0.0.1:7002?peers=http://127.0.0.1:7001 \
//! SWITCHBOARD_URL_CLIENT=http://127.0.0.1:7003?peers=http://127.0.0.1:7001 \
//!   cargo run -p quickstart --features http
//! ```

mod quickstart;

use switchboard::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match quickstart::run(Settings::load).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
