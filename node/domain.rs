//! The shop's domain: documents' layouts, commands that turn requests into changes, money
//! arithmetic, and the projections derived from ledger entries and the catalog.
//!
//! By feature:
//! - rules and arithmetic: [`access`] (who may do what), [`money`] (minor units, rounding);
//! - writing: [`commands`] — one file per feature under `commands/`: shop set-up and settings,
//!   people, invites and admission, products, stock, sales (voids, returns, refunds) — plus
//!   [`catalog`] (the `catalog` document's layout), [`products_csv`], [`orders`] (suppliers,
//!   purchase orders, deliveries), [`shifts`] (cash drawers), [`tickets`] (parked carts) and
//!   [`revoked_sales`] (a revoked till's sales, accepted by an owner);
//! - deriving: [`projection`] (the tables kept with every change), [`reindex`] (rebuilding
//!   them), [`fifo`] and [`profit`] (cost and profit);
//! - reading: [`queries`]; [`reports`] (day sums kept with every change, one file per report),
//!   [`alerts`] (raised by apply-time hooks or derived when listed) and [`audit`] (its index,
//!   daily checkpoints, the export and its offline check) each write what they read.

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
