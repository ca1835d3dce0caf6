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
mod domain;
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

/// With `autotests = false` a file in tests/it/ that no `mod` line names is never compiled nor
/// run, silently: every file and directory here must be a module of this binary.
#[test]
fn every_file_in_tests_it_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && name != "main" && !main.lines().any(|l| l == format!("mod {name};")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not declared in tests/it/main.rs: {missing:?}"
    );
}
