//! Topics: how subjects map to topic names, and creating them through the admin API.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::convert::BACKEND;
use super::settings::KafkaSettings;
use switchboard_core::error::{Error, Result};

/// The topic a subject is published to: the subject itself.
///
/// Switchboard's subject characters (letters, digits, `-`, `_`, `.`) are all
/// legal in topic names and its 200-byte limit is under Kafka's 249, so every
/// valid subject is a topic name as it is.
pub(super) fn topic_for(subject: &str) -> &str {
    subject
}

/// The librdkafka regex subscription for a subject pattern: `*` is one token
/// (`[^.]+`), `>` one or more (`.+`), everything else literal, anchored at
/// both ends (`orders.*` → `^orders\.[^.]+$`).
pub(super) fn pattern_regex(pattern: &str) -> String {
    let tokens: Vec<String> = pattern
        .split('.')
        .map(|token| match token {
            "*" => "[^.]+".to_owned(),
            ">" => ".+".to_owned(),
            // Subject characters are letters, digits, `-` and `_`: none is special in a regex.
            literal => literal.to_owned(),
        })
        .collect();
    format!("^{}$", tokens.join("\\."))
}

/// Topics a pattern subscription passes over: switchboard's per-connection
/// reply topics and Kafka's internal ones (`__consumer_offsets`, …).
pub(super) fn is_reserved(topic: &str) -> bool {
    topic.starts_with("sb-replies-") || topic.starts_with("__")
}

/// Creates topics on first use (brokers such as tansu do not auto-create them)
/// and remembers which exist, so the check costs nothing after the first call.
pub(super) struct Topics {
    admin: AdminClient<DefaultClientContext>,
    known: Mutex<HashSet<String>>,
    create: bool,
    partitions: i32,
    replication: i32,
    timeout: Duration,
}

impl Topics {
    pub fn new(settings: &KafkaSettings) -> Result<Self> {
        let admin = settings
            .client_config()
            .create()
            .map_err(|e| Error::backend(BACKEND, e))?;
        Ok(Topics {
            admin,
            known: Mutex::default(),
            create: settings.create_topics,
            partitions: settings.partitions,
            replication: settings.replication,
            timeout: settings.delivery_timeout,
        })
    }

    /// Makes sure `topic` exists, creating it with the configured partitions.
    pub async fn ensure(&self, topic: &str) -> Result<()> {
        if self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        if self.create {
            self.create(topic, self.partitions).await?;
        }
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_owned());
        Ok(())
    }

    /// Creates `topic` with `partitions`; an existing topic is fine.
    pub async fn create(&self, topic: &str, partitions: i32) -> Result<()> {
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(self.replication));
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics(&[new_topic], &options)
            .await
            .map_err(|e| Error::backend(BACKEND, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(Error::backend(
                        BACKEND,
                        format!("cannot create topic `{topic}`: {code}"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Deletes `topic` (a connection's reply topic, on close); a topic that is
    /// already gone is fine.
    pub async fn delete(&self, topic: &str) -> Result<()> {
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(|e| Error::backend(BACKEND, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => {
                    return Err(Error::backend(
                        BACKEND,
                        format!("cannot delete topic `{topic}`: {code}"),
                    ))
                }
            }
        }
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_anchored_regexes_that_match_what_the_pattern_matches() {
        assert_eq!(pattern_regex("orders.*"), "^orders\\.[^.]+$");
        assert_eq!(pattern_regex("dead-letter.>"), "^dead-letter\\..+$");
        assert_eq!(pattern_regex("a.*.c_d"), "^a\\.[^.]+\\.c_d$");
        assert!(is_reserved("sb-replies-switchboard-1-2") && is_reserved("__consumer_offsets"));
        assert!(!is_reserved("orders.placed"));
    }
}
