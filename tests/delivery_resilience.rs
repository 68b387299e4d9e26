//! The resilience layers and the event policy, against real transports:
//! retry, per-subject timeouts, circuit breaker, bulkheads, dead letters,
//! and one trace id across an HTTP hop and a broker hop.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::layers::{
    CircuitBreakerLayer, CircuitBreakerPolicy, CircuitState, ConcurrencyLimitLayer, RetryLayer,
    RetryPolicy, TimeoutLayer,
};
use switchboard::service::EventPolicy;
use switchboard::transport::Health;
use switchboard::{connect, wire, Bus, ErrorKind, Message, Service};

fn layered(bus: &Bus, layer: Arc<dyn switchboard::transport::Transport>) -> Bus {
    Bus::new(layer).with_default_timeout(bus.default_timeout())
}

fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

/// A responder that starts 150 ms after the request was sent: without retries
/// the request fails with NoResponders, with them it succeeds.
async fn retry_waits_out_missing_responders() {
    let bus = connect(&format!("memory://{}", support::unique("retry")))
        .await
        .unwrap();
    let plain = bus
        .request("late.answer", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(plain.kind(), ErrorKind::NoResponders);

    let retrying = layered(
        &bus,
        Arc::new(RetryLayer::new(bus.transport().clone(), quick_retry(10))),
    );
    let responder = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut requests = responder.subscribe("late.answer").await.unwrap();
        let mut request = requests.next().await.unwrap();
        request.reply(Message::new("here")).await.unwrap();
    });
    let reply = retrying
        .request("late.answer", Message::new("x"))
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"here");
}

/// A handler error is an answer: not retried unless configured, then retried `attempts` times.
async fn remote_errors_are_retried_only_when_configured() {
    let bus = connect(&format!("memory://{}", support::unique("remote")))
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = Service::new("flaky", bus.clone())
        .on("flaky.op", move |_: ()| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("always fails") }
        })
        .start()
        .await
        .unwrap();
    let default = layered(
        &bus,
        Arc::new(RetryLayer::new(bus.transport().clone(), quick_retry(3))),
    );
    let err = default
        .request_json::<_, ()>("flaky.op", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);

    let policy = RetryPolicy {
        remote_errors: true,
        ..quick_retry(3)
    };
    let eager = layered(
        &bus,
        Arc::new(RetryLayer::new(bus.transport().clone(), policy)),
    );
    let err = eager
        .request_json::<_, ()>("flaky.op", &())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    service.shutdown().await;
}

/// Configuration wins over the caller's timeout for matching subjects only.
async fn per_subject_timeouts_override_the_callers() {
    let bus = connect(&format!("memory://{}", support::unique("timeouts")))
        .await
        .unwrap();
    let service = Service::new("slow", bus.clone())
        .on("slow.report", |_: ()| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, String>(())
        })
        .on("slow.other", |_: ()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(())
        })
        .start()
        .await
        .unwrap();
    let rules = vec![("slow.report".to_owned(), Duration::from_millis(50))];
    let limited = layered(
        &bus,
        Arc::new(TimeoutLayer::new(bus.transport().clone(), rules).unwrap()),
    );
    let started = Instant::now();
    let err = limited
        .request_json_with_timeout::<_, ()>("slow.report", &(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    limited
        .request_json_with_timeout::<_, ()>("slow.other", &(), Duration::from_secs(5))
        .await
        .unwrap();
    service.shutdown().await;
}

/// Against the real NATS server: no responders opens the circuit, calls then
/// fail fast with CircuitOpen and health says degraded; once a responder is
/// back, probes close it again.
async fn circuit_opens_fails_fast_and_closes_again_on_nats() {
    let Some(bus) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let subject = format!("breaker.{}", support::unique("svc"));
    let policy = CircuitBreakerPolicy {
        minimum_calls: 4,
        window: 4,
        open_for: Duration::from_millis(300),
        half_open_probes: 2,
        ..CircuitBreakerPolicy::default()
    };
    let breaker = Arc::new(CircuitBreakerLayer::new(bus.transport().clone(), policy));
    let guarded = layered(&bus, breaker.clone());
    for _ in 0..4 {
        let err = guarded
            .request(&subject, Message::new("x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoResponders);
    }
    assert!(matches!(breaker.state(&subject), CircuitState::Open { .. }));
    let err = guarded
        .request(&subject, Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    assert!(matches!(guarded.health(), Health::Degraded(ref why) if why.contains(&subject)));

    let service = Service::new("breaker-echo", bus.clone())
        .on(subject.clone(), |text: String| async move {
            Ok::<_, String>(text)
        })
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..2 {
        let reply: String = guarded.request_json(&subject, "probe").await.unwrap();
        assert_eq!(reply, "probe");
    }
    assert_eq!(breaker.state(&subject), CircuitState::Closed);
    assert_eq!(guarded.health(), Health::Connected);
    service.shutdown().await;
    bus.close().await.unwrap();
    assert_eq!(guarded.health(), Health::Closed);
}

/// At most `limit` outgoing calls run at once; one that cannot get a slot in
/// its timeout fails with Overloaded and disturbs nothing else.
async fn outgoing_bulkhead_bounds_calls_in_flight() {
    let bus = connect(&format!("memory://{}", support::unique("bulkhead")))
        .await
        .unwrap();
    let service = Service::new("held", bus.clone())
        .on("held.op", |_: ()| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>(())
        })
        .start()
        .await
        .unwrap();
    let limit = Arc::new(ConcurrencyLimitLayer::new(
        bus.transport().clone(),
        2,
        Duration::from_millis(50),
    ));
    let limited = layered(&bus, limit.clone());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let limited = limited.clone();
        calls.spawn(async move { limited.request_json::<_, ()>("held.op", &()).await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(limit.in_flight(), 2);
    let err = limited
        .request_json_with_timeout::<_, ()>("held.op", &(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(limit.in_flight(), 0);
    service.shutdown().await;
}

/// A flood of requests at a service with a handler bulkhead of 4: never more
/// than 4 handlers run, and every request is answered.
async fn handler_bulkhead_bounds_work_under_a_flood() {
    let bus = connect(&format!("memory://{}", support::unique("flood")))
        .await
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (now, high) = (running.clone(), peak.clone());
    let service = Service::new("flooded", bus.clone())
        .concurrency(4)
        .on("flooded.op", move |n: u32| {
            let (now, high) = (now.clone(), high.clone());
            async move {
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                high.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>(n)
            }
        })
        .start()
        .await
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..400u32 {
        let bus = bus.clone();
        calls.spawn(async move { bus.request_json::<_, u32>("flooded.op", &n).await });
    }
    let mut answered = 0;
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
        answered += 1;
    }
    assert_eq!(answered, 400);
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak concurrency {peak}");
    service.shutdown().await;
}

/// Settings turn layers on by configuration, and bad values name their key.
async fn layers_from_settings() {
    let settings = switchboard::Settings::from_toml(&format!(
        r#"
        [transports.default]
        url = "memory://{}"
        [resilience.timeouts]
        "cfg.slow" = "40ms"
        [resilience.retry]
        attempts = 2
        [resilience.circuit_breaker]
        [resilience.concurrency]
        handlers = 8
        "#,
        support::unique("settings")
    ))
    .unwrap();
    let router = settings.connect().await.unwrap();
    assert_eq!(router.handler_concurrency(), Some(8));
    let service = Service::new("cfg", router.clone())
        .on("cfg.slow", |_: ()| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>(())
        })
        .start()
        .await
        .unwrap();
    let err = router.send::<_, ()>("cfg.slow", &()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    service.shutdown().await;

    for (bad, key) in [
        (
            "[resilience.retry]\nattempts = 0",
            "resilience.retry.attempts",
        ),
        (
            "[resilience.timeouts]\n\"a..b\" = \"1s\"",
            "resilience.timeouts",
        ),
        (
            "[resilience.timeouts]\n\"a\" = \"soon\"",
            "resilience.timeouts",
        ),
        (
            "[resilience.circuit_breaker]\nfailure_rate = 2.0",
            "failure_rate",
        ),
        ("[resilience.retry]\nmin_delay = \"fast\"", "min_delay"),
        ("[resilience]\nretries = 3", "retries"),
    ] {
        let err = switchboard::Settings::from_toml(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{bad:?} gave {err}");
    }
}

/// An event whose handler keeps failing goes to the dead-letter subject with
/// the error and attempt count, once, and the stream moves on, on every backend CI runs.
async fn failing_events_are_dead_lettered_on_every_backend() {
    let mut urls = vec![format!("memory://{}", support::unique("dlq"))];
    if cfg!(feature = "http") {
        urls.push("http://127.0.0.1:0".to_owned());
    }
    if cfg!(feature = "nats") {
        urls.push(support::nats_url());
    }
    if cfg!(feature = "kafka") {
        urls.push(support::kafka_url());
    }
    for url in urls {
        let Some(bus) = support::connect_or_skip(&url).await else {
            continue;
        };
        let name = support::unique("dlq");
        let subject = format!("{name}.happened");
        let dead_letter = format!("dead-letter.{name}");
        let mut letters = bus.subscribe(&dead_letter).await.unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let counted = handled.clone();
        let service = Service::new(name.clone(), bus.clone())
            .event_policy(EventPolicy::default().max_attempts(3))
            .on_ordered(subject.clone(), move |n: u32| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 1 {
                        Err(format!("event {n} is poison"))
                    } else {
                        Ok(())
                    }
                }
            })
            .start()
            .await
            .unwrap();
        bus.publish_json(&subject, &1u32).await.unwrap();
        bus.publish_json(&subject, &2u32).await.unwrap();
        let letter = support::next_within(&mut letters, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{url}: no dead letter"));
        assert_eq!(letter.payload(), b"1", "{url}");
        let headers = letter.headers();
        assert_eq!(headers.get(wire::DEAD_LETTER_ATTEMPTS), Some("3"), "{url}");
        assert_eq!(
            headers.get(wire::DEAD_LETTER_SUBJECT),
            Some(subject.as_str()),
            "{url}"
        );
        assert_eq!(
            headers.get(wire::DEAD_LETTER_SERVICE),
            Some(name.as_str()),
            "{url}"
        );
        assert!(
            headers
                .get(wire::DEAD_LETTER_ERROR)
                .unwrap()
                .contains("poison"),
            "{url}"
        );
        // The poison event did not block the next one: 3 tries of event 1, then event 2.
        let deadline = Instant::now() + Duration::from_secs(20);
        while handled.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(handled.load(Ordering::SeqCst), 4, "{url}");
        assert!(
            support::next_within(&mut letters, Duration::from_millis(200))
                .await
                .is_none()
        );
        service.shutdown().await;
        bus.close().await.unwrap();
        eprintln!("{url}: poison event dead-lettered after 3 attempts, next event handled");
    }
}

crate::tests!(
    retry_waits_out_missing_responders,
    remote_errors_are_retried_only_when_configured,
    per_subject_timeouts_override_the_callers,
    circuit_opens_fails_fast_and_closes_again_on_nats,
    outgoing_bulkhead_bounds_calls_in_flight,
    handler_bulkhead_bounds_work_under_a_flood,
    layers_from_settings,
    failing_events_are_dead_lettered_on_every_backend,
);
