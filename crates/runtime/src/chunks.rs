//! Splitting payloads into stream chunks of at most [`aiaa_proto::CHUNK_SIZE`] bytes, and
//! turning an object-store byte stream into such chunks without buffering the whole payload.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Re-chunks a byte stream into pieces of exactly `size` bytes (the last one may be shorter).
/// Memory stays bounded by one chunk plus one incoming piece.
pub fn rechunk<S, E>(input: S, size: usize) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
{
    futures::stream::unfold(
        (input, BytesMut::new(), false),
        move |(mut input, mut buf, mut ended)| async move {
            loop {
                if buf.len() >= size {
                    let out = buf.split_to(size).freeze();
                    return Some((Ok(out), (input, buf, ended)));
                }
                if ended {
                    if buf.is_empty() {
                        return None;
                    }
                    let out = buf.split().freeze();
                    return Some((Ok(out), (input, buf, ended)));
                }
                match input.next().await {
                    Some(Ok(piece)) => buf.extend_from_slice(&piece),
                    Some(Err(e)) => return Some((Err(e), (input, buf, true))),
                    None => ended = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rechunks_exactly() {
        let pieces: Vec<Result<Bytes, ()>> = vec![
            Ok(Bytes::from(vec![1u8; 5])),
            Ok(Bytes::from(vec![2u8; 7])),
            Ok(Bytes::from(vec![3u8; 1])),
        ];
        let out: Vec<Bytes> = rechunk(futures::stream::iter(pieces), 4)
            .map(|r| r.unwrap())
            .collect()
            .await;
        let sizes: Vec<usize> = out.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![4, 4, 4, 1]);
        let all: Vec<u8> = out.concat();
        assert_eq!(all, [vec![1u8; 5], vec![2u8; 7], vec![3u8; 1]].concat());
    }
}
