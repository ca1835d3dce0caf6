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
    /// This node has no shop yet (create or join one first).
    #[error("{0}")]
    NoShop(String),
    /// This node already belongs to a shop (it cannot create or join another).
    #[error("{0}")]
    HasShop(String),
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
    Store(#[from] StoreError),
    /// Something that should not happen; logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// An Automerge document refused an operation or did not load (a bug, or a damaged
    /// document).
    #[error("automerge: {0}")]
    Automerge(Box<automerge::AutomergeError>),
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
            Error::HasShop(_) => "has_shop",
            Error::Unreachable(_) => "unreachable",
            Error::RateLimited(_) => "rate_limited",
            Error::OtherShop(_) => "other_shop",
            Error::UpdateNeeded(_) => "update_needed",
            Error::Rejected(_) => "rejected",
            Error::Store(_) => "store",
            Error::Internal(_) | Error::Automerge(_) => "internal",
        }
    }
}

/// A failure of the store or of the files beside it, with its cause kept (`source()`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error(transparent)]
    Database(#[from] redb::DatabaseError),
    /// A transaction could not begin.
    #[error(transparent)]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error(transparent)]
    Table(#[from] redb::TableError),
    /// Reading or writing the file failed.
    #[error(transparent)]
    Storage(#[from] redb::StorageError),
    /// A commit failed (nothing of it was written).
    #[error(transparent)]
    Commit(#[from] redb::CommitError),
    /// Any other redb failure.
    #[error(transparent)]
    Redb(#[from] redb::Error),
    /// Something done to the store or a file beside it (`what`) failed because of `source`
    /// (an I/O error, an undecodable row …).
    #[error("{what}: {source}")]
    Failed {
        /// What was being done ("cannot write /data/peers").
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stored data is not what it must be (a document missing changes, an envelope gone).
    #[error("{0}")]
    Damaged(String),
}

impl Error {
    /// `what` failed on the store or a file beside it because of `source`.
    pub fn store(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Store(StoreError::Failed {
            what: what.into(),
            source: source.into(),
        })
    }

    /// The stored data is damaged: `what` says how.
    pub fn damaged(what: impl Into<String>) -> Error {
        Error::Store(StoreError::Damaged(what.into()))
    }
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.into())
            }
        }
    )*};
}
store_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        // Boxed: the error is large, and every `Result` of the crate carries its size.
        Error::Automerge(Box::new(e))
    }
}

/// Result of a domain command.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A storage failure keeps its cause: the I/O error is reachable through `source()`, not
    /// only flattened into words.
    #[test]
    fn a_store_error_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::store("cannot write /data/peers", io);
        assert_eq!(e.code(), "store");
        assert_eq!(
            e.to_string(),
            "storage error: cannot write /data/peers: denied"
        );
        let store = e.source().expect("the store error");
        let cause = store.source().expect("the I/O error");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("the very I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        // redb's errors convert with their kind kept.
        let e: Error = redb::StorageError::Corrupted("bad page".into()).into();
        assert!(matches!(e, Error::Store(StoreError::Storage(_))), "{e:?}");
    }

    /// "No shop yet" and "already has a shop" are told apart.
    #[test]
    fn no_shop_and_has_shop_are_distinct() {
        assert_eq!(Error::NoShop("x".into()).code(), "no_shop");
        assert_eq!(Error::HasShop("x".into()).code(), "has_shop");
    }
}
