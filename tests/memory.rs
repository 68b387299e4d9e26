//! Memory-backend behaviour beyond the conformance suite: bounded buffers.

use std::time::Duration;

use switchboard::{connect, Message};

#[tokio::test]
async fn full_buffer_makes_the_publisher_wait() {
    let bus = connect("memory://backpressure?buffer=2").await.unwrap();
    let mut slow = bus.subscribe("jobs").await.unwrap();
    bus.publish("jobs", Message::new("1")).await.unwrap();
    bus.publish("jobs", Message::new("2")).await.unwrap();

    // The third publish waits for room instead of growing the buffer.
    let third = tokio::spawn({
        let bus = bus.clone();
        async move { bus.publish("jobs", Message::new("3")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "publish did not wait for a full buffer"
    );

    assert_eq!(slow.next().await.unwrap().payload(), b"1");
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("publish resumes once there is room")
        .unwrap()
        .unwrap();
    assert_eq!(slow.next().await.unwrap().payload(), b"2");
    assert_eq!(slow.next().await.unwrap().payload(), b"3");
}

#[tokio::test]
async fn full_group_member_is_skipped_for_one_with_room() {
    let bus = connect("memory://group-room?buffer=1").await.unwrap();
    let mut busy = bus.queue_subscribe("work", "pool").await.unwrap();
    let mut idle = bus.queue_subscribe("work", "pool").await.unwrap();
    bus.publish("work", Message::new("0")).await.unwrap(); // to `busy`, which never reads it
    bus.publish("work", Message::new("1")).await.unwrap(); // to `idle`
    assert_eq!(idle.next().await.unwrap().payload(), b"1");

    // Rotation now points at `busy`, whose buffer is full: the message goes to `idle`.
    tokio::time::timeout(
        Duration::from_secs(1),
        bus.publish("work", Message::new("2")),
    )
    .await
    .expect("publish waited for a full member while another had room")
    .unwrap();
    assert_eq!(idle.next().await.unwrap().payload(), b"2");
    assert_eq!(busy.next().await.unwrap().payload(), b"0");
    let nothing = tokio::time::timeout(Duration::from_millis(100), busy.next()).await;
    assert!(nothing.is_err(), "a group message was delivered twice");
}

#[tokio::test]
async fn dropped_request_fails_fast_instead_of_timing_out() {
    let bus = connect("memory://dropped").await.unwrap();
    let mut sub = bus.subscribe("svc").await.unwrap();
    let dropper = tokio::spawn(async move {
        let incoming = sub.next().await.unwrap();
        drop(incoming);
        sub
    });
    let started = std::time::Instant::now();
    let err = bus
        .request_with_timeout("svc", Message::new("x"), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), switchboard::ErrorKind::Remote, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(dropper.await.unwrap());
}

/// A request that waited in a busy service's queue past its caller's timeout
/// is skipped, not run late: the caller already got `Timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_expired_in_the_queue_is_not_run() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let bus = connect("memory://expiry").await.unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let counter = ran.clone();
    let running = switchboard::Service::new("slow", bus.clone())
        .concurrency(1)
        .on("slow.work", move |n: u32| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, String>(n)
            }
        })
        .start()
        .await
        .unwrap();
    let first = tokio::spawn({
        let bus = bus.clone();
        async move {
            bus.request_json_with_timeout::<_, u32>("slow.work", &1, Duration::from_secs(5))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Queued behind the first; its caller gives up after 100 ms.
    let second = bus
        .request_json_with_timeout::<_, u32>("slow.work", &2, Duration::from_millis(100))
        .await;
    assert_eq!(second.unwrap_err().kind(), switchboard::ErrorKind::Timeout);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let third: u32 = bus.request_json("slow.work", &3).await.unwrap();
    assert_eq!(third, 3);
    let report = running.shutdown().await;
    assert_eq!(ran.load(Ordering::SeqCst), 2, "the expired request ran");
    assert_eq!(report.expired_requests, 1, "{report}");
}

/// A caller may wait "forever": a timeout too long to add to the clock is no
/// deadline for the responder, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_may_wait_without_limit() {
    let bus = connect("memory://forever").await.unwrap();
    let running = switchboard::Service::new("echo", bus.clone())
        .on("echo.forever", |n: u32| async move { Ok::<_, String>(n) })
        .start()
        .await
        .unwrap();
    let reply: u32 = bus
        .request_json_with_timeout("echo.forever", &5, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(reply, 5);
    assert!(running.shutdown().await.is_clean());
}
