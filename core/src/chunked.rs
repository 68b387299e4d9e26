//! Payloads encoded into a chunk each thread shares among them: a payload
//! is split off the chunk it was written into and holds a reference count
//! on it, so encoding one costs no allocation or copy of its own, and a
//! clone of it (a client's, to write it out) is a count too.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};

/// The size of a chunk. A payload kept long keeps its chunk alive, so a
/// chunk is small.
const CHUNK: usize = 4 * 1024;
/// Room left in a chunk below which the next payload starts a new one.
const ROOM: usize = 512;

thread_local! {
    static CURRENT: Cell<BytesMut> = Cell::new(BytesMut::new());
}

/// Runs `write` on the thread's chunk and splits off what it wrote; what a
/// failed `write` left is discarded.
pub(crate) fn encode<E>(
    write: impl FnOnce(&mut BytesMut) -> std::result::Result<(), E>,
) -> std::result::Result<Bytes, E> {
    // Taken out while written to: an encode inside `write` (a `Serialize`
    // impl that encodes) finds none and starts a chunk of its own.
    let mut buffer = CURRENT.try_with(Cell::take).unwrap_or_default();
    if buffer.capacity() < ROOM {
        buffer = BytesMut::with_capacity(CHUNK);
    }
    let encoded = match write(&mut buffer) {
        Ok(()) => Ok(buffer.split().freeze()),
        Err(err) => {
            buffer.clear();
            Err(err)
        }
    };
    // A large payload grew the chunk: later ones do not share it.
    let grown = buffer.capacity() > CHUNK || encoded.as_ref().is_ok_and(|p| p.len() > CHUNK);
    if !grown {
        // Fails only while the thread ends: the chunk is then dropped.
        let _ = CURRENT.try_with(|current| current.set(buffer));
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn put(text: &'static [u8]) -> impl FnOnce(&mut BytesMut) -> Result<(), ()> {
        move |buffer| {
            buffer.put_slice(text);
            Ok(())
        }
    }

    #[test]
    fn payloads_share_a_chunk_and_keep_their_bytes() {
        let first = encode(put(b"first")).unwrap();
        let second = encode(put(b"second")).unwrap();
        assert_eq!(&first[..], b"first");
        assert_eq!(&second[..], b"second");
        // Split off the same allocation, one after the other.
        assert_eq!(first.as_ptr().wrapping_add(first.len()), second.as_ptr());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let failed = encode(|buffer: &mut BytesMut| {
            buffer.put_slice(b"half");
            Err("stopped")
        });
        assert_eq!(failed, Err("stopped"));
        assert_eq!(&encode(put(b"whole")).unwrap()[..], b"whole");
    }

    #[test]
    fn a_large_payload_is_not_shared_with_the_next() {
        let large = vec![7u8; 3 * CHUNK];
        let big = encode(|buffer: &mut BytesMut| {
            buffer.put_slice(&large);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(big.len(), 3 * CHUNK);
        let small = encode(put(b"small")).unwrap();
        assert_ne!(big.as_ptr().wrapping_add(big.len()), small.as_ptr());
        assert_eq!(&small[..], b"small");
    }

    #[test]
    fn encoding_while_encoding_uses_a_buffer_of_its_own() {
        let outer = encode(|buffer: &mut BytesMut| {
            let inner = encode(put(b"inner")).unwrap();
            buffer.put_slice(b"outer:");
            buffer.put_slice(&inner);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(&outer[..], b"outer:inner");
    }
}
