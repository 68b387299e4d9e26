//! A shop of three services (orders → inventory → payments), written once.
//!
//! Configuration alone picks the backend and, per route, the style:
//!
//! ```text
//! cargo run --example shop                                        # in-memory, every route sync
//! SWITCHBOARD_STYLE=async cargo run --example shop                # every route async
//! SWITCHBOARD_CONFIG=examples/shop/mixed.toml cargo run --example shop   # per-route styles
//! SWITCHBOARD_URL=nats://127.0.0.1:4222 cargo run --example shop --features nats
//! SWITCHBOARD_URL=kafka://127.0.0.1:9092 cargo run --example shop --features kafka
//! SWITCHBOARD_URL_ORDERS=http://127.0.0.1:7101 \
//! SWITCHBOARD_URL_INVENTORY=http://127.0.0.1:7102?peers=http://127.0.0.1:7101 \
//! SWITCHBOARD_URL_PAYMENTS=http://127.0.0.1:7103?peers=http://127.0.0.1:7101 \
//! SWITCHBOARD_URL_CLIENT=http://127.0.0.1:7104?peers=http://127.0.0.1:7101 \
//!   cargo run --example shop --features http
//! SWITCHBOARD_URL_ORDERS=grpc://127.0.0.1:7201 \
//! SWITCHBOARD_URL_INVENTORY=grpc://127.0.0.1:7202?peers=grpc://127.0.0.1:7201 \
//! SWITCHBOARD_URL_PAYMENTS=grpc://127.0.0.1:7203?peers=grpc://127.0.0.1:7201 \
//! SWITCHBOARD_URL_CLIENT=grpc://127.0.0.1:7204?peers=grpc://127.0.0.1:7201 \
//!   cargo run --example shop --features grpc
//! ```
//!
//! It prints the business result (orders, stock, balances) as JSON and exits
//! non-zero if it differs from the expected one.

mod shop;

use switchboard::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let report = match shop::run(&shop::sample_orders(), Settings::load).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report serialises")
    );
    if report == shop::expected_report() {
        println!("the business result is the expected one");
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("error: the business result differs from the expected one");
        std::process::ExitCode::FAILURE
    }
}
