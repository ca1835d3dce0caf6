//! The error every domain command returns. The API maps each variant to its HTTP status and
//! the `{"error":{"code","message","field"}}` body; embedders match on it.

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: names the field and says what is wrong. Nothing was changed.
    #[error("{message}")]
    Invalid {
        /// The offending field (`lines[0].qty`), if one.
        field: Option<String>,
        /// What is wrong, in words a user understands.
        message: String,
    },
    /// Not logged in, or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Logged in but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (duplicate SKU, already voided …).
    #[error("{0}")]
    Conflict(String),
    /// This node has no shop yet (create or join one first), or already has one.
    #[error("{0}")]
    NoShop(String),
    /// Another device that had to answer did not (the inviting node while joining …).
    #[error("{0}")]
    Unreachable(String),
    /// Too many attempts; retry after this many seconds.
    #[error("too many attempts; try again in {0} s")]
    RateLimited(u64),
    /// A peer spoke about another shop than this node's (a typed refusal, not misbehaviour:
    /// another tenant of a relay must not be able to make the relay and a till drop each
    /// other).
    #[error("{0}")]
    OtherShop(String),
    /// A peer speaks another version of the sync protocol: one of the two needs an update.
    #[error("{0}")]
    UpdateNeeded(String),
    /// A signed change failed verification (bad signature, signer not allowed …).
    #[error("change refused: {0}")]
    Rejected(String),
    /// Storage failed; nothing was acknowledged.
    #[error("storage error: {0}")]
    Store(String),
    /// Something that should not happen; logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A bad-input error on a named field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The stable machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::NoShop(_) => "no_shop",
            Error::Unreachable(_) => "unreachable",
            Error::RateLimited(_) => "rate_limited",
            Error::OtherShop(_) => "other_shop",
            Error::UpdateNeeded(_) => "update_needed",
            Error::Rejected(_) => "rejected",
            Error::Store(_) => "store",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Store(e.to_string())
    }
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.to_string())
            }
        }
    )*};
}
store_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Internal(format!("automerge: {e}"))
    }
}

/// Result of a domain command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
