//! The audit trail: query it, export it (see `domain::audit`).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::range::time_range;
use crate::domain::audit::{AuditFilter, AuditPage, parse_cursor};
use crate::error::Error;

/// Filters of `GET /audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Start (a shop-local day, an RFC 3339 time or ms; default: the beginning).
    from: Option<String>,
    /// End (a day is included; default: no end).
    to: Option<String>,
    /// Only this person (uuid).
    person: Option<Uuid>,
    /// Only these kinds, comma-separated (`sale,void`, `product_edit`, `device_join` …).
    kind: Option<String>,
    /// Only this device (id).
    device: Option<String>,
    /// Only this document (`catalog`), or documents starting with a prefix ending in `/`
    /// (`ledger/2026-11-22/`).
    doc: Option<String>,
    /// Page size (default 100, at most 1000).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Who did what, when, on which document (managers and owners), newest first; every entry
/// names its signed change (hash, signer key, signature).
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit trail", body = AuditPage),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn audit(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let from = q.from.clone().unwrap_or_else(|| "0".into());
    let (from, to) = time_range(&state.handle, Some(&from), q.to.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "between 1 and 1000"));
    }
    let filter = AuditFilter {
        from,
        to,
        person: q.person,
        kinds: q
            .kind
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect(),
        device: q.device.filter(|d| !d.is_empty()),
        doc: q.doc.filter(|d| !d.is_empty()),
        limit,
        cursor: q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(parse_cursor)
            .transpose()?,
    };
    let handle = state.handle.clone();
    let principal = auth.principal.clone();
    let page = tokio::task::spawn_blocking(move || handle.audit(&principal, &filter))
        .await
        .map_err(|e| ApiError::Node(Error::Internal(e.to_string())))??;
    Ok(Json(page))
}

/// Sends what is written to it as body chunks; `sent` once the first one is on its way.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    sent: bool,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sent = true;
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The audit export (managers and owners): JSON lines with every change's document, hash,
/// signer, signature and envelope bytes (base64), and every daily checkpoint. Check it offline
/// with `tillmesh audit verify FILE`.
#[utoipa::path(
    get,
    path = "/audit/export",
    tag = "audit",
    responses(
        (status = 200, description = "JSON lines: header, change…, checkpoint…, end", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn audit_export(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (early_tx, early_rx) = tokio::sync::oneshot::channel::<Error>();
    let handle = state.handle.clone();
    let principal = auth.principal.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            sent: false,
        };
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, writer);
        if let Err(e) = handle.audit_export(&principal, &mut out) {
            if out.get_ref().sent {
                // Failed while streaming: the body ends with an error, the client sees it cut.
                tracing::error!("audit export failed: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            } else {
                // Failed before the first byte left (a refusal included): the handler answers
                // the error, and what was buffered is dropped unsent.
                let _ = out.into_parts();
                let _ = early_tx.send(e);
            }
        }
    });
    // The first chunk, or the error that came before it: a refused export is a 403, not a
    // 200 cut short.
    let first = match rx.recv().await {
        Some(chunk) => chunk,
        None => {
            let e = early_rx
                .await
                .unwrap_or_else(|_| Error::Internal("the audit export stopped".into()));
            return Err(e.into());
        }
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = Body::from_stream(futures::StreamExt::chain(
        futures::stream::iter([first]),
        rest,
    ));
    let name = format!(
        "audit-{}.jsonl",
        chrono::Utc::now().format("%Y-%m-%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
