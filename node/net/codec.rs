//! The wire format of the sync protocol (`/tillmesh/sync/1`): one request and one response per
//! stream, each a frame of a `u32` big-endian length followed by that many bytes.
//!
//! The length is checked against the limit before anything is allocated, and the body is read
//! as it arrives rather than into a buffer sized by the peer's claim, so a peer that announces
//! 4 GiB (or 8 MiB and then stalls) costs us nothing.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response;

/// How much of a frame body is reserved up front; the rest grows as bytes arrive.
const INITIAL_READ_CAPACITY: usize = 64 * 1024;

/// Length-prefixed opaque bytes; what they mean is the sync layer's business.
#[derive(Debug, Clone)]
pub(crate) struct FrameCodec {
    /// The largest request or response body accepted or sent.
    max_bytes: usize,
}

impl FrameCodec {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }

    async fn read_frame<T>(&self, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut prefix = [0u8; 4];
        io.read_exact(&mut prefix).await?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {len} bytes exceeds the limit of {}",
                    self.max_bytes
                ),
            ));
        }
        let mut body = Vec::with_capacity(len.min(INITIAL_READ_CAPACITY));
        // `len` fits in u64 on every platform we build for.
        let read = futures::AsyncReadExt::take(&mut *io, len as u64)
            .read_to_end(&mut body)
            .await?;
        if read != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame ended after {read} of {len} bytes"),
            ));
        }
        Ok(body)
    }

    async fn write_frame<T>(&self, io: &mut T, body: &[u8]) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|_| body.len() <= self.max_bytes)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "frame of {} bytes exceeds the limit of {}",
                        body.len(),
                        self.max_bytes
                    ),
                )
            })?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(body).await?;
        io.flush().await
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn frame(len: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn round_trips_a_frame() {
        let codec = FrameCodec::new(16);
        let mut out = Cursor::new(Vec::new());
        codec.write_frame(&mut out, b"hello").await.unwrap();
        assert_eq!(out.get_ref(), &frame(5, b"hello"));
        let mut input = Cursor::new(out.into_inner());
        assert_eq!(codec.read_frame(&mut input).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn rejects_an_oversized_claim_without_reading_it() {
        let codec = FrameCodec::new(16);
        let mut input = Cursor::new(frame(u32::MAX, b"tiny"));
        let err = codec.read_frame(&mut input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn rejects_a_truncated_frame() {
        let codec = FrameCodec::new(16);
        let mut input = Cursor::new(frame(10, b"short"));
        let err = codec.read_frame(&mut input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut input = Cursor::new(vec![0, 0]);
        assert!(codec.read_frame(&mut input).await.is_err());
    }

    #[tokio::test]
    async fn refuses_to_send_an_oversized_frame() {
        let codec = FrameCodec::new(4);
        let mut out = Cursor::new(Vec::new());
        let err = codec.write_frame(&mut out, b"hello").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.get_ref().is_empty());
    }
}
