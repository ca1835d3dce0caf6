//! Every integration test, in one binary (the shape of ripgrep's `tests/`): one module per area,
//! so the crate and its dependencies are linked once instead of once per test file. Run one area
//! with `cargo test --test it ui::`, one test with `cargo test --test it ui::some_test`.
//!
//! The tests share one process and run on parallel threads: none may change process-wide state
//! (environment, current directory, a global tracing subscriber) — what needs its own process
//! re-runs itself (`common::in_private_netns`, `common::in_own_process`).
//!
//! `cargo test` builds this binary and the `tillmesh` binary it starts with the `test-fast-kdf`
//! feature (Cargo.toml): new sealed keys and PIN hashes use argon2id at its minimum cost.

// Shared helpers.
mod browser;
mod common;
mod procs;

mod api_router;
mod backup;
mod bookkeeping_audit;
mod books;
mod convergence;
mod discovery;
mod examples;
mod hostile;
mod mesh;
mod net;
mod openapi;
mod ops;
mod process;
mod quarantine;
mod relay;
mod relay_web;
mod reports;
mod short_code;
mod snapshots;
mod sync;
mod ui;
mod ui_audit;
mod web_guard;
