//! The relay's TLS certificate: the operator's own (`--tls-cert FILE --tls-key FILE`, PEM), or
//! a self-signed one made on first start and kept in `DATA_DIR/tls/` so its fingerprint stays
//! the same across restarts. The relay prints the certificate's SHA-256 fingerprint at start:
//! an owner compares it with what the browser shows before typing a password into a
//! self-signed page.
//!
//! rustls runs with the `ring` provider (no C crypto library to build, DESIGN §11), TLS 1.2 and
//! 1.3, offering HTTP/2 and HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Directory of the generated certificate inside the relay's data dir.
pub const TLS_DIR: &str = "tls";
/// The generated certificate (PEM).
pub const CERT_FILE: &str = "cert.pem";
/// The generated certificate's private key (PEM, readable by the owner only).
pub const KEY_FILE: &str = "key.pem";

/// The certificate the relay serves, ready for the TLS listener.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the certificate (DER), as browsers show it: `AB:CD:…` (32 pairs).
    pub fingerprint: String,
    /// The certificate (PEM), e.g. for a client to trust exactly it.
    pub cert_pem: String,
    /// Where the certificate was read from.
    pub cert_path: PathBuf,
    /// Whether it was generated now (first start without `--tls-cert`).
    pub generated: bool,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 fingerprint of a DER certificate, `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The operator's certificate and key if both are given, else the one in `DATA_DIR/tls/`,
/// made now if there is none yet.
pub fn load_or_generate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<TlsIdentity> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        (None, None) => {
            let dir = data_dir.join(TLS_DIR);
            let (c, k) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            let generated = if c.exists() && k.exists() {
                false
            } else {
                generate(&dir, &c, &k)?;
                true
            };
            (c, k, generated)
        }
        _ => {
            return Err(Error::invalid(
                "tls_cert",
                "give both --tls-cert and --tls-key, or neither (a self-signed certificate is \
                 then made in DATA_DIR/tls/)",
            ));
        }
    };
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| Error::invalid("tls", format!("cannot read {}: {e}", p.display())))
    };
    let cert_bytes = read(&cert_path)?;
    let key_bytes = read(&key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::invalid(
                "tls_cert",
                format!("{} is not a PEM certificate: {e}", cert_path.display()),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(Error::invalid(
            "tls_cert",
            format!("{} holds no certificate", cert_path.display()),
        ));
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        Error::invalid(
            "tls_key",
            format!("{} is not a PEM private key: {e}", key_path.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            Error::invalid(
                "tls_key",
                format!(
                    "the key {} does not fit the certificate {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsIdentity {
        config: Arc::new(config),
        fingerprint,
        cert_pem: String::from_utf8_lossy(&cert_bytes).into_owned(),
        cert_path,
        generated,
    })
}

/// Makes a self-signed certificate for `localhost`, the loopback addresses and this machine's
/// host name (browsers will still warn: the owner checks the fingerprint once).
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<()> {
    let store = |e: std::io::Error| Error::store(format!("cannot write {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(store)?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::Internal(format!("cannot make a TLS certificate: {e}")))?;
    write_private(key, made.key_pair.serialize_pem().as_bytes()).map_err(store)?;
    std::fs::write(cert, made.cert.pem()).map_err(store)?;
    Ok(())
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(dir.path(), None, None).unwrap();
        assert!(a.generated);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let b = load_or_generate(dir.path(), None, None).unwrap();
        assert!(!b.generated);
        assert_eq!(a.fingerprint, b.fingerprint);
        // The operator's files, given explicitly, are the same certificate.
        let c = load_or_generate(
            Path::new("/nonexistent"),
            Some(&dir.path().join(TLS_DIR).join(CERT_FILE)),
            Some(&dir.path().join(TLS_DIR).join(KEY_FILE)),
        )
        .unwrap();
        assert_eq!(c.fingerprint, a.fingerprint);
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = load_or_generate(dir.path(), Some(&cert), Some(&cert)).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        let err = load_or_generate(dir.path(), Some(&cert), None).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }
}
