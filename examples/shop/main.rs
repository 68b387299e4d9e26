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
//!
//! The same services also run as separate processes, each until Ctrl-C or
//! SIGTERM (`examples/shop/processes.sh` starts all four on NATS or HTTP):
//!
//! ```text
//! cargo run --example shop -- --service orders     # or inventory, payments: runs until a signal
//! cargo run --example shop -- --client             # places the orders, checks the result
//! ```

mod shop;

use std::time::Duration;

use switchboard::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["--service", name] => return one_service(name).await,
        ["--client"] => return client().await,
        _ => {
            eprintln!("usage: shop [--service orders|inventory|payments | --client]");
            return std::process::ExitCode::FAILURE;
        }
    }
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

/// Runs one service in this process until Ctrl-C or SIGTERM; exits non-zero
/// if its shutdown was not clean.
async fn one_service(name: &str) -> std::process::ExitCode {
    let outcome = async {
        let bus = Settings::load(name)?.connect().await?;
        let running = match name {
            "orders" => shop::start_orders(bus.clone()).await?,
            "inventory" => shop::start_inventory(bus.clone()).await?,
            "payments" => shop::start_payments(bus.clone()).await?,
            other => return Err(format!("no service called `{other}`").into()),
        };
        eprintln!("{name} ready");
        let reports = switchboard::service::run_until_signal(vec![running]).await?;
        bus.close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(reports)
    };
    match outcome.await {
        Ok(reports) if reports.iter().all(|r| r.is_clean()) => {
            eprintln!("{name} stopped: {}", reports[0]);
            std::process::ExitCode::SUCCESS
        }
        Ok(reports) => {
            eprintln!("error: {name} stopped unclean: {}", reports[0]);
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {name}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Places the sample orders against services running elsewhere and checks the result.
async fn client() -> std::process::ExitCode {
    let outcome = async {
        let bus = Settings::load("client")?.connect().await?;
        shop::wait_for_services(&bus, Duration::from_secs(30)).await?;
        let report = shop::place_and_report(&bus, &shop::sample_orders()).await?;
        bus.close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(report)
    };
    match outcome.await {
        Ok(report) if report == shop::expected_report() => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serialises")
            );
            println!("the business result is the expected one");
            std::process::ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serialises")
            );
            eprintln!("error: the business result differs from the expected one");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
