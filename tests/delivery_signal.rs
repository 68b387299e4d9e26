//! `run_until_signal`: services run until SIGTERM or SIGINT, then shut down
//! cleanly and report. This binary runs a copy of itself as the service
//! process and signals it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard::service::run_until_signal;
use switchboard::Service;

const ROLE: &str = "SB_SIGNAL_TEST_ROLE";

/// The service process: one service on memory, ready when it prints `ready`,
/// then each report's `Display` once stopped.
async fn child() {
    let bus = switchboard::connect("memory://signal-test").await.unwrap();
    let orders = Service::new("orders", bus.clone())
        .on("orders.place", |id: u64| async move { Ok::<_, String>(id) })
        .start()
        .await
        .unwrap();
    let doubled: u64 = bus.request_json("orders.place", &21u64).await.unwrap();
    assert_eq!(doubled, 21);
    // Listening before `ready`: a signal that comes before `run_until_signal`
    // listens is caught here instead of ending the process, and the parent
    // sends it again until the process ends.
    use tokio::signal::unix::{signal, SignalKind};
    let _early = (
        signal(SignalKind::terminate()).unwrap(),
        signal(SignalKind::interrupt()).unwrap(),
    );
    println!("ready");
    for report in run_until_signal(vec![orders]).await.unwrap() {
        println!("clean={} {report}", report.is_clean());
    }
    bus.close().await.unwrap();
}

/// Starts the service process, waits for `ready`, sends `signal`, and
/// returns its exit status and what it printed after `ready`.
fn signalled(signal: &str) -> (std::process::ExitStatus, Vec<String>) {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "service")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // Sent every 200 ms until the process closes its output, at most 100
    // times, then SIGKILL, so a service that never stops fails the test
    // instead of hanging it. The process is not reaped before, so its id
    // stays its own.
    let ended = Arc::new(AtomicBool::new(false));
    let sender = {
        let (ended, signal, pid) = (ended.clone(), signal.to_owned(), process.id().to_string());
        std::thread::spawn(move || {
            let send = |signal: &str| {
                let sent = Command::new("kill")
                    .args([&format!("-{signal}"), &pid])
                    .status()
                    .unwrap();
                assert!(sent.success());
            };
            for _ in 0..100 {
                if ended.load(Ordering::Acquire) {
                    return;
                }
                send(&signal);
                std::thread::sleep(Duration::from_millis(200));
            }
            send("KILL");
        })
    };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    ended.store(true, Ordering::Release);
    sender.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = process.try_wait().unwrap() {
            return (status, rest);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not stop after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stops_cleanly_on(signal: &str) {
    let (status, printed) = signalled(signal);
    assert!(status.success(), "{signal}: {status}, printed {printed:?}");
    assert_eq!(printed.len(), 1, "one report: {printed:?}");
    assert!(
        printed[0].starts_with("clean=true shut down in"),
        "{printed:?}"
    );
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(ROLE).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(child());
        return std::process::ExitCode::SUCCESS;
    }
    let arguments = libtest_mimic::Arguments::from_args();
    let trials = vec![
        libtest_mimic::Trial::test("services_stop_cleanly_on_sigterm", || {
            stops_cleanly_on("TERM");
            Ok(())
        }),
        libtest_mimic::Trial::test("services_stop_cleanly_on_sigint", || {
            stops_cleanly_on("INT");
            Ok(())
        }),
    ];
    libtest_mimic::run(&arguments, trials).exit_code()
}
