//! tillmesh
pub mod api;
pub mod domain;
pub mod error;
pub mod node;
pub use error::{Error, Result};
pub use node::{Node, NodeBuilder, NodeHandle};
