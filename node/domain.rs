//! The shop's domain.
pub mod model;
