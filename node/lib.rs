//! tillmesh
pub mod docs;
pub mod domain;
pub mod engine;
pub mod error;
pub mod identity;
pub mod node;
pub mod store;
pub use error::{Error, Result};
pub use node::{Node, NodeBuilder, NodeHandle};
