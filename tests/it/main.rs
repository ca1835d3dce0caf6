//! Every integration test, in one binary (the shape of ripgrep's `tests/`): one module per area,
//! so the crate and its dependencies are linked once instead of once per test file. Run one area
//! with `cargo test --test it relay::` (a filter is a substring: `ui::` finds the browser tests
//! in `browser::ui`), one test with `cargo test --test it relay::some_test`.
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

mod access;
mod api_router;
mod backup;
mod bookkeeping_audit;
mod books;
mod convergence;
mod discovery;
mod domain;
mod examples;
mod hostile;
mod kdf;
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
mod web_guard;

/// With `autotests = false` a file in tests/it/ that no `mod` line names is never compiled nor
/// run, silently: every file and directory here (and in a module directory, beside its
/// `mod.rs`) must be a module of this binary, and tests/ holds nothing else.
#[test]
fn every_file_in_tests_it_is_a_module() {
    fn check(dir: &std::path::Path, root: &str, missing: &mut Vec<String>) {
        let parent = std::fs::read_to_string(dir.join(root)).unwrap();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                check(&path, "mod.rs", missing);
            } else if path.extension().is_none_or(|e| e != "rs") || path.ends_with(root) {
                continue;
            }
            let declared = |l: &str| l == format!("mod {name};") || l == format!("pub mod {name};");
            if !parent.lines().any(declared) {
                missing.push(path.display().to_string());
            }
        }
    }
    let mut missing = Vec::new();
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    // Nor is a file beside tests/it/ (a test file in the layout of before): nothing builds it.
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "it") {
            missing.push(path.display().to_string());
        }
    }
    check(&tests.join("it"), "main.rs", &mut missing);
    assert!(missing.is_empty(), "not declared as modules: {missing:?}");
}
