//! "One header message, then the payload in chunks": the one framing of every streamed payload
//! in the contracts (Put, Get, CreateSession, Infer and its answer, UploadModel, Push).
//!
//! Each such message has a `oneof kind` with a header variant and a chunk variant; [`Framed`]
//! names them, so senders build a stream with [`send`] / [`try_send`] / [`messages`], and readers
//! take the header and then the body with [`receive`], without matching on each contract's
//! variants by hand. A reader sees a broken framing (no header, a chunk first, a second header,
//! an empty message) as a [`FrameError`] and decides what that means for its caller (bad
//! request from a client, internal error from a backend).

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::CHUNK_SIZE;
use crate::common::v1::Chunk;
use crate::datastore::v1::{
    CreateSessionRequest, GetResponse, Item, PutHeader, PutRequest, SessionHeader, create_session_request,
    get_response, put_request,
};
use crate::inference::v1::{
    InferHeader, InferRequest, InferResponse, InferResult, UploadModelHeader, UploadModelRequest,
    infer_request, infer_response, upload_model_request,
};
use crate::registry::v1::{PushHeader, PushRequest, push_request};

/// What one message of a framed stream carries.
#[derive(Debug)]
pub enum Frame<H> {
    /// The header (first, exactly once).
    Header(H),
    /// A piece of the payload, in order.
    Chunk(Bytes),
    /// Neither (a message whose `kind` is unset).
    Empty,
}

/// A message type of a framed stream: which of its variants is the header and which the chunk.
pub trait Framed: Sized {
    /// The header's type.
    type Header;
    /// The message carrying `header`.
    fn header(header: Self::Header) -> Self;
    /// The message carrying a piece of the payload.
    fn chunk(data: Bytes) -> Self;
    /// What this message carries.
    fn into_frame(self) -> Frame<Self::Header>;
}

/// A broken framing, or the stream itself broke off.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended before its header.
    NoHeader,
    /// The first message was not the header.
    HeaderNotFirst,
    /// A header arrived after the first message.
    SecondHeader,
    /// A message carried neither header nor chunk.
    EmptyMessage,
    /// The stream ended with this status (the peer's error, a transport failure, a message over
    /// the size limit).
    Broken(tonic::Status),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoHeader => f.write_str("the stream ended before its header"),
            Self::HeaderNotFirst => f.write_str("the first message must be the header"),
            Self::SecondHeader => f.write_str("a second header arrived"),
            Self::EmptyMessage => f.write_str("a message carried neither header nor chunk"),
            Self::Broken(status) => write!(f, "the stream broke off: {}", status.message()),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// The status the stream ended with, when it broke off (not a framing fault).
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Self::Broken(status) => Some(status),
            _ => None,
        }
    }
}

/// The header, then the chunks as they come.
pub fn send<M: Framed>(header: M::Header, chunks: impl Stream<Item = Bytes>) -> impl Stream<Item = M> {
    futures::stream::once(std::future::ready(M::header(header))).chain(chunks.map(M::chunk))
}

/// The header, then the chunks of a body that may fail part way (the error ends the stream
/// where it happened, as the server's answer).
pub fn try_send<M: Framed, E>(
    header: M::Header,
    chunks: impl Stream<Item = Result<Bytes, E>>,
) -> impl Stream<Item = Result<M, E>> {
    futures::stream::once(std::future::ready(Ok(M::header(header))))
        .chain(chunks.map(|piece| piece.map(M::chunk)))
}

/// The header, then `payload` cut into [`CHUNK_SIZE`] pieces (views of it, not copies).
pub fn messages<M: Framed>(header: M::Header, payload: Bytes) -> impl Iterator<Item = M> {
    std::iter::once(M::header(header)).chain(pieces(payload).map(M::chunk))
}

/// `payload` cut into [`CHUNK_SIZE`] pieces (views of it, not copies); none when it is empty.
pub fn pieces(payload: Bytes) -> impl Iterator<Item = Bytes> {
    (0..payload.len())
        .step_by(CHUNK_SIZE)
        .map(move |at| payload.slice(at..(at + CHUNK_SIZE).min(payload.len())))
}

/// Reads the header of a framed stream and gives back the body: the chunks' bytes, in order, as
/// they arrive. The body ends with the stream; a second header or an empty message in it is an
/// error, as is the stream breaking off.
pub async fn receive<M, S>(
    mut stream: S,
) -> Result<(M::Header, impl Stream<Item = Result<Bytes, FrameError>> + Unpin), FrameError>
where
    M: Framed,
    S: Stream<Item = Result<M, tonic::Status>> + Unpin,
{
    let header = match stream.next().await {
        None => return Err(FrameError::NoHeader),
        Some(Err(status)) => return Err(FrameError::Broken(status)),
        Some(Ok(message)) => match message.into_frame() {
            Frame::Header(header) => header,
            Frame::Chunk(_) | Frame::Empty => return Err(FrameError::HeaderNotFirst),
        },
    };
    let body = stream.map(|message| match message {
        Err(status) => Err(FrameError::Broken(status)),
        Ok(message) => match message.into_frame() {
            Frame::Chunk(data) => Ok(data),
            Frame::Header(_) => Err(FrameError::SecondHeader),
            Frame::Empty => Err(FrameError::EmptyMessage),
        },
    });
    Ok((header, body))
}

/// A chunk variant's payload: raw `bytes` in some contracts, the common `Chunk` message in
/// others.
trait Payload {
    fn wrap(data: Bytes) -> Self;
    fn unwrap(self) -> Bytes;
}

impl Payload for Bytes {
    fn wrap(data: Bytes) -> Self {
        data
    }
    fn unwrap(self) -> Bytes {
        self
    }
}

impl Payload for Chunk {
    fn wrap(data: Bytes) -> Self {
        Chunk { data }
    }
    fn unwrap(self) -> Bytes {
        self.data
    }
}

/// `Framed` for a message whose oneof `kind` (module `$kind`) has the header variant named
/// here and a `Chunk` variant.
macro_rules! framed {
    ($message:ident, $kind:ident, $header_variant:ident($header:ty)) => {
        impl Framed for $message {
            type Header = $header;
            fn header(header: $header) -> Self {
                Self {
                    kind: Some($kind::Kind::$header_variant(header)),
                }
            }
            fn chunk(data: Bytes) -> Self {
                Self {
                    kind: Some($kind::Kind::Chunk(Payload::wrap(data))),
                }
            }
            fn into_frame(self) -> Frame<$header> {
                match self.kind {
                    Some($kind::Kind::$header_variant(header)) => Frame::Header(header),
                    Some($kind::Kind::Chunk(chunk)) => Frame::Chunk(chunk.unwrap()),
                    None => Frame::Empty,
                }
            }
        }
    };
}

framed!(PutRequest, put_request, Header(PutHeader));
framed!(GetResponse, get_response, Item(Item));
framed!(
    CreateSessionRequest,
    create_session_request,
    Header(SessionHeader)
);
framed!(InferRequest, infer_request, Header(InferHeader));
framed!(InferResponse, infer_response, Result(InferResult));
framed!(
    UploadModelRequest,
    upload_model_request,
    Header(UploadModelHeader)
);
framed!(PushRequest, push_request, Header(PushHeader));

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> UploadModelHeader {
        UploadModelHeader {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn payloads_are_cut_into_chunk_size_views() {
        let payload = Bytes::from(vec![7u8; 2 * CHUNK_SIZE + 5]);
        let sizes: Vec<usize> = pieces(payload).map(|p| p.len()).collect();
        assert_eq!(sizes, [CHUNK_SIZE, CHUNK_SIZE, 5]);
        assert_eq!(pieces(Bytes::new()).count(), 0);
    }

    #[tokio::test]
    async fn what_is_sent_is_received() {
        let payload = Bytes::from((0..3 * CHUNK_SIZE / 2).map(|i| i as u8).collect::<Vec<_>>());
        let sent: Vec<_> = messages::<UploadModelRequest>(header("m"), payload.clone())
            .map(Ok)
            .collect();
        assert_eq!(sent.len(), 3);
        let (h, body) = receive(futures::stream::iter(sent)).await.unwrap();
        assert_eq!(h.name, "m");
        let parts: Vec<Bytes> = body.map(Result::unwrap).collect().await;
        assert_eq!(parts.concat(), payload);
    }

    #[tokio::test]
    async fn broken_framings_are_named() {
        let chunk = || Ok(UploadModelRequest::chunk(Bytes::from_static(b"x")));
        let head = || Ok(UploadModelRequest::header(header("m")));
        let empty = || Ok(UploadModelRequest { kind: None });
        let first = |msgs: Vec<Result<UploadModelRequest, tonic::Status>>| async move {
            receive(futures::stream::iter(msgs))
                .await
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(first(vec![]).await.unwrap(), "the stream ended before its header");
        assert_eq!(
            first(vec![chunk()]).await.unwrap(),
            "the first message must be the header"
        );
        assert_eq!(
            first(vec![empty()]).await.unwrap(),
            "the first message must be the header"
        );
        let broke = first(vec![Err(tonic::Status::cancelled("gone"))]).await.unwrap();
        assert_eq!(broke, "the stream broke off: gone");
        let rest = |msgs: Vec<Result<UploadModelRequest, tonic::Status>>| async move {
            let (_, body) = receive(futures::stream::iter(msgs)).await.unwrap();
            body.collect::<Vec<_>>().await
        };
        let after = rest(vec![head(), chunk(), head()]).await;
        assert!(after[0].is_ok());
        assert!(matches!(after[1], Err(FrameError::SecondHeader)));
        let after = rest(vec![head(), empty()]).await;
        assert!(matches!(after[0], Err(FrameError::EmptyMessage)));
        let after = rest(vec![head(), Err(tonic::Status::data_loss("cut"))]).await;
        let Err(e) = &after[0] else {
            panic!("expected the break")
        };
        assert_eq!(e.status().map(tonic::Status::code), Some(tonic::Code::DataLoss));
    }

    #[tokio::test]
    async fn a_failing_body_ends_the_sent_stream_with_its_error() {
        let body = futures::stream::iter([Ok(Bytes::from_static(b"ab")), Err("disk")]);
        let sent: Vec<Result<PutRequest, &str>> = try_send(PutHeader::default(), body).collect().await;
        assert!(matches!(
            sent[0].as_ref().unwrap().clone().into_frame(),
            Frame::Header(_)
        ));
        assert!(matches!(sent[1].as_ref().unwrap().clone().into_frame(), Frame::Chunk(ref c) if c == "ab"));
        assert_eq!(sent[2], Err("disk"));
    }
}
