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
use super::auth::{Auth, require_manager};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::error::Error;
use crate::model::{DocumentInfo, Principal, Role};

/// The document that never leaves through the API.
const VAULT: &str = "vault";

/// The document only owners may download.
const MEMBERS: &str = "members";

/// Whether `principal` sees document `id` (of kind `kind`) in the list: never `vault`;
/// `members` owners only; the rest managers and owners (as
/// [`NodeHandle::document_bytes`](crate::NodeHandle::document_bytes) serves them).
fn readable_by(principal: &Principal, id: &str, kind: &str) -> bool {
    let is = |name: &str| id == name || id.starts_with(&format!("{name}/")) || kind == name;
    if is(VAULT) {
        return false;
    }
    if is(MEMBERS) {
        return principal.role == Role::Owner;
    }
    principal.role >= Role::Manager
}

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
    require_manager(&auth.principal)?;
    let docs = state
        .handle
        .documents()?
        .into_iter()
        .filter(|d| readable_by(&auth.principal, &d.id, &d.kind))
        .collect();
    Ok(Json(docs))
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
    require_manager(&auth.principal)?;
    let id = id.trim_matches('/');
    if id == VAULT || id.starts_with("vault/") {
        return Err(Error::NotFound(format!("no document `{id}`")).into());
    }
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
