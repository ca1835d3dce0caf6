//! API errors: every failure answers `{"error":{"code","message","field"}}` with its status.
//!
//! | node error | status | code |
//! |---|---|---|
//! | `Invalid` (and every undecodable request) | 400 | `invalid` |
//! | `Unauthorized` | 401 | `unauthorized` |
//! | `Forbidden`, `Rejected` | 403 | `forbidden`, `rejected` |
//! | `NotFound` | 404 | `not_found` |
//! | `Conflict`, `NoShop`, `HasShop` | 409 | `conflict`, `no_shop`, `has_shop` |
//! | `Unreachable` | 502 | `unreachable` |
//! | `RateLimited` | 429 + `Retry-After` | `rate_limited` |
//! | `Store`, `Internal`, `Automerge` | 500, message "internal error" | `store`, `internal` |
//!
//! The API adds `csrf` (403), `too_large` (413), `not_found` for unknown routes (404),
//! `method_not_allowed` (405), `host_not_allowed` (421: a `Host` header that names none of the
//! node's names, see `guard`) and `setup_token` (403: first-start setup from another device
//! without the node's setup token). 422 is never used: a body that is JSON but not the right shape is
//! as much bad input as one that is not JSON.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Error;

/// Why an API request failed. Wraps the node's [`Error`] and adds what only HTTP can get wrong.
#[derive(Debug)]
pub enum ApiError {
    /// An error from the node (or a bad request, as [`Error::Invalid`]).
    Node(Error),
    /// A cookie-authenticated unsafe request without the session's `X-CSRF-Token`.
    Csrf,
    /// The request body is larger than the API accepts.
    TooLarge,
    /// No route has this path.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The `Host` header names none of the node's names (DNS rebinding, or a name the node
    /// was not told about: see `--allowed-host`).
    HostNotAllowed(String),
    /// First-start setup or join from another device without the node's setup token.
    SetupToken,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid`, `unauthorized`, `forbidden`, `csrf`,
    /// `not_found`, `conflict`, `no_shop`, `rate_limited`, `rejected`, `too_large`, `internal` …
    pub code: String,
    /// What is wrong, in words a user understands.
    pub message: String,
    /// The offending request field (`lines[0].qty`), or null.
    pub field: Option<String>,
}

impl ApiError {
    /// A bad-input error without a field.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::Node(Error::Invalid {
            field: None,
            message: message.into(),
        })
    }

    /// A bad-input error on a named field.
    pub(crate) fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Node(Error::invalid(field, message))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Node(e) => match e {
                Error::Invalid { .. } => StatusCode::BAD_REQUEST,
                Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                Error::Forbidden(_) | Error::Rejected(_) => StatusCode::FORBIDDEN,
                Error::NotFound(_) => StatusCode::NOT_FOUND,
                Error::Conflict(_)
                | Error::NoShop(_)
                | Error::HasShop(_)
                | Error::OtherShop(_)
                | Error::UpdateNeeded(_) => StatusCode::CONFLICT,
                Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                Error::Unreachable(_) => StatusCode::BAD_GATEWAY,
                Error::Store(_) | Error::Internal(_) | Error::Automerge(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::HostNotAllowed(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::SetupToken => StatusCode::FORBIDDEN,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Node(e) => e.code(),
            ApiError::Csrf => "csrf",
            ApiError::TooLarge => "too_large",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::HostNotAllowed(_) => "host_not_allowed",
            ApiError::SetupToken => "setup_token",
        }
    }

    /// The body of this error.
    fn detail(&self) -> ErrorDetail {
        let (message, field) = match self {
            ApiError::Node(Error::Invalid { field, message }) => (message.clone(), field.clone()),
            ApiError::Node(Error::Store(_) | Error::Internal(_) | Error::Automerge(_)) => {
                ("internal error".into(), None)
            }
            ApiError::Node(e) => (e.to_string(), None),
            ApiError::Csrf => (
                "missing or wrong X-CSRF-Token header (send the csrf_token of your session)".into(),
                None,
            ),
            ApiError::TooLarge => ("the request body is too large".into(), None),
            ApiError::RouteNotFound => ("no such API route".into(), None),
            ApiError::MethodNotAllowed => ("this route does not accept that method".into(), None),
            ApiError::HostNotAllowed(host) => (
                format!(
                    "this node does not answer to the name {host:?}: open it by its IP address, \
                     its own name, or a name given with --allowed-host"
                ),
                None,
            ),
            ApiError::SetupToken => (
                "this node has no shop yet: from another device, setting it up needs the setup \
                 token it printed when it started (from the device itself, none is needed)"
                    .into(),
                Some("setup_token".into()),
            ),
        };
        ErrorDetail {
            code: self.code().into(),
            message,
            field,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Node(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Node(e) => e.fmt(f),
            other => f.write_str(&other.detail().message),
        }
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Node(e @ (Error::Store(_) | Error::Internal(_) | Error::Automerge(_))) =
            &self
        {
            tracing::error!(error = %e, code = e.code(), "request failed");
        }
        let status = self.status();
        let mut res = (
            status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        let headers = res.headers_mut();
        match &self {
            ApiError::Node(Error::RateLimited(secs)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from((*secs).max(1)));
            }
            ApiError::Node(Error::Unauthorized(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tillmesh\""),
                );
            }
            _ => {}
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                serde_error("invalid request body", &source_text(&e))
            }
            JsonRejection::JsonSyntaxError(e) => serde_error("malformed JSON", &source_text(&e)),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::invalid("expected a JSON body with `Content-Type: application/json`")
            }
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::invalid(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::invalid(format!(
                "could not read the request body: {}",
                rejection.body_text()
            ))
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => {
                let field = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                    _ => None,
                };
                ApiError::Node(Error::Invalid {
                    field,
                    message: format!("invalid path: {}", e.body_text()),
                })
            }
            _ => ApiError::invalid(format!("invalid path: {}", rejection.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        match &rejection {
            QueryRejection::FailedToDeserializeQueryString(e) => {
                serde_error("invalid query string", &source_text(e))
            }
            _ => ApiError::invalid(rejection.body_text()),
        }
    }
}

/// The message of the error behind a rejection (serde's, with the path to the field).
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    e.source()
        .map(ToString::to_string)
        .unwrap_or_else(|| e.to_string())
}

/// A bad-input error from a serde message, naming the field when the message says which.
///
/// Messages look like `lines[0].qty: invalid type: string "x", expected i64 at line 1 column
/// 30` (the path comes from `serde_path_to_error`, which axum uses), `missing field `price``
/// or `unknown field `colour`, expected one of …`.
fn serde_error(what: &str, detail: &str) -> ApiError {
    let (path, rest) = split_path(detail);
    let named =
        named_field(rest, "unknown field `").or_else(|| named_field(rest, "missing field `"));
    let field = match (path, named) {
        // serde_path_to_error already ends the path with an unknown field's name.
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            Some(path.to_owned())
        }
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (Some(path), None) => Some(path.to_owned()),
        (None, Some(name)) => Some(name.to_owned()),
        (None, None) => None,
    };
    ApiError::Node(Error::Invalid {
        field,
        message: format!("{what}: {detail}"),
    })
}

/// Splits `path: message` into its parts when the prefix is a field path.
fn split_path(detail: &str) -> (Option<&str>, &str) {
    if let Some((path, rest)) = detail.split_once(": ") {
        let is_path = !path.is_empty()
            && path != "."
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
        if is_path {
            return (Some(path), rest);
        }
    }
    (None, detail)
}

/// The name between backquotes after `prefix` at the start of `message`.
fn named_field<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(&rest[..end]).filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::Node(Error::Invalid { field, .. }) => field,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn serde_messages_name_the_field() {
        let f = |s: &str| field_of(serde_error("x", s));
        assert_eq!(
            f("lines[0].qty: invalid type: string \"x\", expected i64 at line 1 column 30"),
            Some("lines[0].qty".into())
        );
        assert_eq!(
            f("missing field `price` at line 1 column 20"),
            Some("price".into())
        );
        assert_eq!(
            f("lines[0]: missing field `qty` at line 1 column 20"),
            Some("lines[0].qty".into())
        );
        assert_eq!(
            f("unknown field `colour`, expected one of `sku`, `name`"),
            Some("colour".into())
        );
        assert_eq!(
            f("zz: unknown field `zz`, expected one of `username`"),
            Some("zz".into())
        );
        assert_eq!(
            f("lines[0].zz: unknown field `zz`, expected one of `qty`"),
            Some("lines[0].zz".into())
        );
        assert_eq!(f("EOF while parsing an object at line 1 column 7"), None);
        assert_eq!(
            f("invalid type: map, expected a string at line 1 column 1"),
            None
        );
    }
}
