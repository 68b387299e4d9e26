//! The outbox's promise on every backend: a queue group that is away gets,
//! when it returns, every event sent meanwhile — once each; and while one
//! group is away, the others get those events at once.

use std::time::Duration;

use super::fixture::Fixture;
use super::support::{
    ensure, receive, unique_subject, CaseResult, Failure, TempStore, RECEIVE_WITHIN,
};
use crate::message::Message;
use crate::settings::OutboxSettings;

/// Events sent while the group is away.
const EVENTS: u32 = 20;

/// A group subscribes (so the backend knows it), takes one event and goes
/// away; the client sends `EVENTS` through an outbox; the group comes back
/// and must get all of them — in order where the backend keeps order — and
/// nothing twice. Kafka keeps them for the group; memory, HTTP and gRPC
/// learn that nobody took them, so the outbox holds them.
pub(super) async fn outbox_delivers_to_a_group_away_and_back(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("outbox-away");
    let group = subject.rsplit('.').next().unwrap_or("outbox").to_owned();
    let store = TempStore::new(&group);
    let settings = OutboxSettings {
        path: Some(store.0.clone()),
        ..OutboxSettings::default()
    };
    let client = client.with_outbox(&settings).await?;
    let outcome = away_and_back(&server, &client, &subject, &group).await;
    let _ = client.close().await;
    let _ = server.close().await;
    outcome
}

async fn away_and_back(
    server: &crate::Bus,
    client: &crate::Bus,
    subject: &str,
    group: &str,
) -> CaseResult {
    let mut members = server.queue_subscribe(subject, group).await?;
    client.publish(subject, Message::new("warm-up")).await?;
    let mut warm_up = receive(&mut members, "the warm-up event").await?;
    warm_up.ack().await?;
    drop(members);
    // The group is away: give the backend (and a mesh's peers) a moment to know.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..EVENTS {
        client.publish(subject, Message::new(n.to_string())).await?;
    }
    let mut members = server.queue_subscribe(subject, group).await?;
    let got = numbered(&mut members, "the group back").await?;
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    ensure!(
        distinct == (0..EVENTS).collect::<Vec<_>>() && got.len() == distinct.len(),
        "the group back got {} of {EVENTS} events ({} distinct): {got:?}",
        got.len(),
        distinct.len()
    );
    if client.capabilities().ordering.is_supported() {
        ensure!(got == distinct, "events arrived out of send order: {got:?}");
    }
    Ok(())
}

/// Two groups subscribe and take a warm-up event, so the sender knows both;
/// one goes away; `EVENTS` are sent through an outbox. The group still there
/// gets them at once; the one that comes back gets them all too — in order
/// where the backend keeps order — and neither gets anything twice.
pub(super) async fn outbox_holds_events_for_a_group_away_while_another_takes_them(
    fixture: &dyn Fixture,
) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("outbox-two-groups");
    let suffix = subject.rsplit('.').next().unwrap_or("outbox").to_owned();
    let store = TempStore::new(&suffix);
    let settings = OutboxSettings {
        path: Some(store.0.clone()),
        ..OutboxSettings::default()
    };
    let client = client.with_outbox(&settings).await?;
    let groups = (format!("{suffix}-stays"), format!("{suffix}-away"));
    let outcome = one_away(&server, &client, &subject, &groups).await;
    let _ = client.close().await;
    let _ = server.close().await;
    outcome
}

async fn one_away(
    server: &crate::Bus,
    client: &crate::Bus,
    subject: &str,
    (stays, away): &(String, String),
) -> CaseResult {
    let mut staying = server.queue_subscribe(subject, stays).await?;
    let mut leaving = server.queue_subscribe(subject, away).await?;
    // Until both groups took one, the sender may not know them both yet.
    client.publish(subject, Message::new("warm-up")).await?;
    for (members, name) in [(&mut staying, stays), (&mut leaving, away)] {
        let mut warm_up = receive(members, &format!("the warm-up event in group {name}")).await?;
        warm_up.ack().await?;
    }
    drop(leaving);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..EVENTS {
        client.publish(subject, Message::new(n.to_string())).await?;
    }
    let got_staying = numbered(&mut staying, "the group that stayed").await?;
    let mut back = server.queue_subscribe(subject, away).await?;
    let got_back = numbered(&mut back, "the group that came back").await?;
    for (got, who) in [
        (&got_staying, "the group that stayed"),
        (&got_back, "the group that came back"),
    ] {
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        ensure!(
            distinct == (0..EVENTS).collect::<Vec<_>>() && got.len() == distinct.len(),
            "{who} got {} of {EVENTS} events ({} distinct): {got:?}",
            got.len(),
            distinct.len()
        );
        if client.capabilities().ordering.is_supported() {
            ensure!(
                *got == distinct,
                "{who} got events out of send order: {got:?}"
            );
        }
    }
    Ok(())
}

/// Receives numbered events until all `EVENTS` came or 20 s passed, then
/// half a second more: anything beyond is a duplicate.
async fn numbered(
    members: &mut crate::transport::Subscription,
    who: &str,
) -> Result<Vec<u32>, Failure> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + RECEIVE_WITHIN * 2;
    while got.len() < EVENTS as usize {
        let next = tokio::time::timeout_at(deadline, members.next()).await;
        let Ok(Some(mut incoming)) = next else { break };
        let text = String::from_utf8_lossy(incoming.payload()).into_owned();
        incoming.ack().await?;
        if text != "warm-up" {
            got.push(
                text.parse::<u32>()
                    .map_err(|_| Failure(format!("{who}: unexpected event {text:?}")))?,
            );
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), members.next()).await
    {
        let text = String::from_utf8_lossy(extra.payload()).into_owned();
        return Err(Failure(format!(
            "{who}: a duplicate arrived after all {EVENTS}: {text:?}"
        )));
    }
    Ok(got)
}
