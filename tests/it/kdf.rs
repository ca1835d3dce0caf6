//! The test-only fast key derivation (`test-fast-kdf`, node/identity.rs `KdfParams::in_effect`):
//! the binary the tests start has it, and a normal build of the package does not.

use crate::procs;

/// `cargo build`, `cargo run` and `cargo install` resolve the package's features without its
/// dev-dependencies: the feature must not be among them (only the dev-dependency of the package
/// on itself turns it on), so a binary built to run a shop seals keys with the real argon2id.
#[test]
fn a_normal_build_does_not_get_the_fast_kdf() {
    let tree = |edges: &str| {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "--prefix",
                "none",
                "-i",
                "tillmesh",
                "-e",
                edges,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let normal = tree("normal,build,features");
    assert!(normal.contains("feature \"default\""), "{normal}");
    assert!(!normal.contains("test-fast-kdf"), "{normal}");
    // The check can see the feature: with the dev-dependencies it is there.
    let with_dev = tree("normal,build,dev,features");
    assert!(with_dev.contains("feature \"test-fast-kdf\""), "{with_dev}");
}

/// The `tillmesh` binary the process tests start is a test build: it says so when it seals the
/// owner's key (so a test shop made by `init` costs no 64 MiB argon2id), and it still works.
#[test]
fn the_binary_the_tests_start_seals_with_the_fast_kdf_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    procs::init(dir.path());
    let err = std::fs::read_to_string(dir.path().join("init.err")).unwrap();
    assert!(
        err.contains("test-fast-kdf") && err.contains("never use this build for a shop"),
        "{err}"
    );
}
