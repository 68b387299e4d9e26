//! A raw rdkafka consumer set up as switchboard's Kafka consumer sets up its
//! own (offsets stored by hand, committed every second), for the benches and
//! the instruction counter that compare the two.

use switchboard::kafka::rdkafka::ClientConfig;

/// The settings of a raw consumer in `group` on the broker at 127.0.0.1:9092.
pub fn consumer_config(group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("socket.nagle.disable", "true")
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    config
}
