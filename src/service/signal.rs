//! Running services until the process is asked to stop (Ctrl-C, SIGTERM).

use futures_util::future::join_all;

use super::shutdown::{RunningService, ShutdownReport};
use crate::error::{Error, Result};

/// Runs `services` until the process gets Ctrl-C (SIGINT) or, on Unix,
/// SIGTERM (what `kill`, systemd and Kubernetes send), then shuts them all
/// down at once, each within its grace period; returns their reports in the
/// order given. Fails at once, stopping nothing, if the process cannot
/// listen for those signals.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> switchboard::Result<()> {
/// use switchboard::Service;
///
/// let bus = switchboard::Settings::load("orders")?.connect().await?;
/// let orders = Service::new("orders", bus.clone())
///     .on("orders.place", |id: u64| async move { Ok::<_, String>(id) })
///     .start()
///     .await?;
/// for report in switchboard::service::run_until_signal(vec![orders]).await? {
///     println!("{report}");
/// }
/// bus.close().await
/// # }
/// ```
pub async fn run_until_signal(services: Vec<RunningService>) -> Result<Vec<ShutdownReport>> {
    let signal = stop_signal()?;
    let name = signal.await;
    tracing::info!(
        signal = name,
        services = services.len(),
        "stopping services"
    );
    Ok(join_all(services.into_iter().map(RunningService::shutdown)).await)
}

/// A future that completes with the signal's name once Ctrl-C or SIGTERM arrives.
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|err| Error::usage(format!("cannot listen for {name}: {err}")))
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    Ok(async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for Ctrl-C; stopping now");
                "none"
            }
        }
    })
}
