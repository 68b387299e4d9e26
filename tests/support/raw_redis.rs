//! The raw redis client doing what switchboard's Redis backend does, for the
//! comparisons in the benches, the allocation test and the instruction
//! counter: `XADD` of a `payload` field, and a consumer group reader.

use switchboard::redis::redis::{self, aio::MultiplexedConnection, streams::StreamId};

/// What switchboard's publish sends for a message without headers, to the
/// stream `key`: an `XADD` of the `payload` field, its reply awaited.
pub async fn add(
    connection: &mut MultiplexedConnection,
    key: &str,
    body: &[u8],
) -> redis::RedisResult<()> {
    redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("payload")
        .arg(body)
        .query_async::<String>(connection)
        .await
        .map(drop)
}

/// Creates the consumer group `raw` on `key` at the stream's end (making the stream).
pub async fn create_group(
    connection: &mut MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<()> {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("raw")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(connection)
        .await
}

/// Reads group `raw` of `key` as switchboard's reader does (up to 256
/// entries, blocking up to 200 ms), hands each entry to `each`, then
/// acknowledges the read's entries in one `XACK` and tells `acked` how many;
/// until a command fails.
pub async fn read_group(
    mut connection: MultiplexedConnection,
    key: String,
    mut each: impl FnMut(&StreamId),
    mut acked: impl FnMut(usize),
) {
    loop {
        let reply: redis::streams::StreamReadReply = match redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("reader")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut connection)
            .await
        {
            Ok(reply) => reply,
            Err(_) => return,
        };
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|stream| stream.ids)
            .map(|entry| {
                each(&entry);
                entry.id
            })
            .collect();
        if ids.is_empty() {
            continue;
        }
        let done: redis::RedisResult<()> = redis::cmd("XACK")
            .arg(&key)
            .arg("raw")
            .arg(&ids)
            .query_async(&mut connection)
            .await;
        if done.is_err() {
            return;
        }
        acked(ids.len());
    }
}
