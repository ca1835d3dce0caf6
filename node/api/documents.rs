//! The Automerge documents a node stores (managers and owners), for audits and integrations.
//!
//! `vault` (encrypted person keys) is never listed nor served, whatever the node answers.
//! `members` (staff PIN hashes, admission records) is listed and served to owners only: a
//! binary document cannot be filtered, and a manager must never read the secrets of staff or
//! owners ([`readable_by`]).
//! Document ids contain `/` (`ledger/2026-11-22/ab12cd34/0`): `GET /documents/{id}` takes them
//! URL-encoded in one segment (`ledger%2F2026-11-22%2Fab12cd34%2F0`) or as a plain path tail.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::model::DocumentInfo;

/// Documents this node stores (managers and owners): `vault` is never listed, `members` only
/// to owners (it holds staff PIN hashes).
#[utoipa::path(
    get,
    path = "/documents",
    tag = "documents",
    responses(
        (status = 200, description = "Documents", body = [DocumentInfo]),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_documents(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<DocumentInfo>>, ApiError> {
    Ok(Json(state.handle.documents(&auth.principal)?))
}

/// A document saved as Automerge bytes (managers and owners; `members` owners only, `vault`
/// never).
#[utoipa::path(
    get,
    path = "/documents/{id}",
    tag = "documents",
    params(("id" = String, Path, description = "Document id, URL-encoded (`ledger%2F2026-11-22%2Fab12cd34%2F0`); `/documents/ledger/2026-11-22/ab12cd34/0` works too")),
    responses(
        (status = 200, description = "Automerge bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "Not allowed (staff; `members` for managers)", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = []))
)]
pub(crate) async fn get_document(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    document(&state, &auth, &id)
}

/// `GET /documents/{id}/{*rest}`: the same with the id's slashes left in the path.
pub(crate) async fn get_document_tail(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((head, rest)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    document(&state, &auth, &format!("{head}/{rest}"))
}

fn document(state: &AppState, auth: &Auth, id: &str) -> Result<Response, ApiError> {
    let id = id.trim_matches('/');
    let bytes = state.handle.document_bytes(&auth.principal, id)?;
    let file_name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}.automerge\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
