//! `GET /api/v1/backup`: a backup file of this node (see [`crate::backup`]), streamed as it is
//! written from one read transaction, so it is consistent while the node keeps working and
//! never sits whole in memory. Owners and managers may make one; it holds every document, the
//! vault (sealed person keys, the shop secret) and staff PIN hashes included, never the device
//! key — so it is always encrypted to the shop's owners and recovery key ([`crate::sealed`]):
//! a manager downloads a file only an owner's password or the recovery key opens.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use crate::error::Error;

/// Bytes handed to the response at a time.
const CHUNK: usize = 64 * 1024;

/// A `Write` that sends what it is given to the response body in chunks.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A backup of this node: every document's signed changes and heads, in one self-checking file
/// encrypted to the shop's owners and recovery key (`tillmesh backup verify` checks it,
/// `tillmesh restore` rebuilds a device from it with the recovery key or an owner's password).
#[utoipa::path(
    get,
    path = "/backup",
    tag = "backup",
    responses(
        (status = 200, description = "The backup file, encrypted to the owners and the recovery key (format in `node/sealed.rs` and `node/backup.rs`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "Not an owner or manager", body = ErrorBody),
        (status = 409, description = "This node has no shop", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn backup(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let (header_tx, header_rx) = oneshot::channel();
    let handle = state.handle.clone();
    let principal = auth.principal.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let mut header_tx = Some(header_tx);
        let result = handle.write_backup(&principal, &mut out, |h| {
            if let Some(t) = header_tx.take() {
                let _ = t.send(Ok(h.clone()));
            }
        });
        match (result, header_tx) {
            // Failed before the first byte: the handler answers the error.
            (Err(e), Some(t)) => {
                let _ = t.send(Err(e));
            }
            // Failed while streaming: the body ends with an error, the client sees it cut
            // short (and `tillmesh backup` refuses the truncated file).
            (Err(e), None) => {
                tracing::error!("backup failed while streaming: {e}");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
            (Ok(h), _) => tracing::info!(
                envelopes = h.records("envelopes"),
                documents = h.records("documents"),
                "backup sent"
            ),
        }
    });
    let header = header_rx
        .await
        .map_err(|_| Error::Internal("the backup task stopped".into()))??;
    let day = chrono::DateTime::from_timestamp_millis(header.created_at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tillmesh-{day}.backup\""),
            ),
        ],
        body,
    )
        .into_response())
}
