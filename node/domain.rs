//! The shop's domain: documents' layouts, commands that turn requests into changes, money
//! arithmetic, and the projections derived from ledger entries and the catalog.

/// `members`, `settings` and `vault` as readers see them moved to [`crate::docs::shop`].
pub use crate::docs::shop;
/// The data model moved to [`crate::model`] (the bottom layer); it is re-exported here so
/// `tillmesh::domain::model::*` keeps working for embedders.
pub use crate::model;
pub use crate::model::{books, ledger};
pub mod access;
pub mod catalog;
pub mod commands;
pub mod fifo;
pub mod money;
pub mod orders;
pub mod profit;
pub mod projection;
pub mod queries;
pub mod reindex;
pub mod reports;
pub mod revoked_sales;
pub mod shifts;
pub mod tickets;
// Alerts, the audit trail and products CSV (issue 5).
pub mod alerts;
pub mod audit;
pub mod products_csv;
