//! Keys: the device key (a file, mode 0600), person keys sealed under a password (argon2id +
//! XChaCha20-Poly1305, kept in the `vault` document), the recovery key, and staff PIN hashes.
//!
//! A PIN is a lock on the till's screen, not a secret against someone who holds the device's
//! disk: 4–6 digits fall to an offline search whatever the hash. Passwords (owners, managers)
//! are at least 10 characters and their hash is deliberately slow.
//!
//! Tests use cheap argon2id parameters instead, through one switch ([`KdfParams::in_effect`],
//! the cargo feature `test-fast-kdf` that only `cargo test` turns on); a release build never.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Minimum length of an owner's or manager's password.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    b
}

/// A fresh ed25519 key.
pub fn new_signing_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes::<32>())
}

/// Short id of a device: the first 8 bytes of its public key, hex. Used in ledger document ids.
pub fn device_id(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

/// Loads the device key from `path`, creating it (mode 0600) on first start.
pub fn load_or_create_device_key(path: &Path) -> Result<SigningKey> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                Error::Internal(format!("device key {} is not 32 bytes", path.display()))
            })?;
            Ok(SigningKey::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = new_signing_key();
            write_secret_file(path, key.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(Error::store(
            format!("cannot read device key {}", path.display()),
            e,
        )),
    }
}

/// Writes a secret file readable only by its owner, durably.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::store(format!("cannot write {}", path.display()), e);
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// argon2id cost of a sealed person key. Stored with the sealed key so it can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// True in a build whose new sealed keys and PIN hashes use [`KdfParams::in_effect`]'s cheap
/// test parameters: only with the cargo feature `test-fast-kdf` (which `cargo test` turns on for
/// the integration tests and the binary they start, see Cargo.toml) AND debug assertions. A
/// release-profile build ignores the feature instead of refusing it, because `cargo bench` and
/// `cargo test --release` build with the dev-dependencies (hence the feature) under that profile
/// and must get the real parameters: so no release binary ever derives with weak parameters.
pub const FAST_TEST_KDF: bool = cfg!(all(feature = "test-fast-kdf", debug_assertions));

/// Set (to anything) in a test process whose new seals and PIN hashes must use the real
/// parameters even though it was built with `test-fast-kdf` (a test that measures their cost).
/// Read only in such a build.
pub const STRONG_KDF_ENV: &str = "TILLMESH_TEST_STRONG_KDF";

impl KdfParams {
    /// For passwords: 64 MiB, 3 passes (≈ 0.1–0.3 s here), so offline guessing is slow.
    pub const PASSWORD: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// For PINs, which only lock the screen.
    pub const PIN: KdfParams = KdfParams {
        m_kib: 8 * 1024,
        t: 1,
        p: 1,
    };

    /// The parameters of a test build (see [`FAST_TEST_KDF`]): argon2id's minimum memory, one
    /// pass. Only this build can name them.
    #[cfg(all(feature = "test-fast-kdf", debug_assertions))]
    const FAST: KdfParams = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    /// What a new seal or PIN hash asked to use `self` really uses: `self`, except in a test
    /// build (see [`FAST_TEST_KDF`]), where it is the cheap `FAST` unless the process
    /// has [`STRONG_KDF_ENV`]. The one switch: opening a sealed key uses the parameters stored
    /// with it, so keys sealed by either build open in both.
    pub fn in_effect(self) -> KdfParams {
        #[cfg(all(feature = "test-fast-kdf", debug_assertions))]
        {
            static STRONG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let strong = *STRONG.get_or_init(|| {
                let strong = std::env::var_os(STRONG_KDF_ENV).is_some();
                if !strong {
                    tracing::warn!(
                        "built with the test-only feature test-fast-kdf: new sealed keys and PIN \
                         hashes use weak argon2id parameters; never use this build for a shop"
                    );
                }
                strong
            });
            if !strong {
                return Self::FAST;
            }
        }
        self
    }

    fn derive(self, secret: &[u8], salt: &[u8]) -> Result<[u8; 32]> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| Error::Internal(format!("argon2 params: {e}")))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(secret, salt, &mut out)
            .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
        Ok(out)
    }
}

/// A person key sealed under a password: what the `vault` document stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// Public key (hex), to check the unsealed key.
    pub public_key: String,
    /// argon2id salt (hex).
    pub salt: String,
    /// XChaCha20 nonce (hex).
    pub nonce: String,
    /// Encrypted secret key (hex).
    pub ciphertext: String,
    /// argon2id cost.
    pub kdf: KdfParams,
}

/// Seals `key` under `password`, with `kdf` (as [`KdfParams::in_effect`] has it).
pub fn seal_key(key: &SigningKey, password: &str, kdf: KdfParams) -> Result<SealedKey> {
    let kdf = kdf.in_effect();
    let salt = random_bytes::<16>();
    let nonce = random_bytes::<24>();
    let k = kdf.derive(password.as_bytes(), &salt)?;
    let cipher = XChaCha20Poly1305::new(&k.into());
    let ct = cipher
        .encrypt(&XNonce::from(nonce), key.as_bytes().as_slice())
        .map_err(|_| Error::Internal("sealing a key failed".into()))?;
    Ok(SealedKey {
        public_key: hex::encode(key.verifying_key().as_bytes()),
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
        kdf,
    })
}

/// Opens a sealed key with `password`; `None` when the password is wrong.
pub fn unseal_key(sealed: &SealedKey, password: &str) -> Result<Option<SigningKey>> {
    let bad = || Error::Internal("a sealed key in the vault is malformed".into());
    let salt = hex::decode(&sealed.salt).map_err(|_| bad())?;
    let nonce: [u8; 24] = hex::decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(bad)?;
    let ct = hex::decode(&sealed.ciphertext).map_err(|_| bad())?;
    let k = sealed.kdf.derive(password.as_bytes(), &salt)?;
    let cipher = XChaCha20Poly1305::new(&k.into());
    let Ok(secret) = cipher.decrypt(&XNonce::from(nonce), ct.as_slice()) else {
        return Ok(None);
    };
    let secret: [u8; 32] = secret.as_slice().try_into().map_err(|_| bad())?;
    let key = SigningKey::from_bytes(&secret);
    if hex::encode(key.verifying_key().as_bytes()) != sealed.public_key {
        return Err(bad());
    }
    Ok(Some(key))
}

/// Hashes a staff PIN: `argon2id$<salt hex>$<hash hex>`, with [`KdfParams::PIN`] (as
/// [`KdfParams::in_effect`] has it: the hash does not record its parameters, so a test build's
/// PIN hashes only verify in a test build).
pub fn hash_pin(pin: &str) -> Result<String> {
    let salt = random_bytes::<16>();
    let h = KdfParams::PIN.in_effect().derive(pin.as_bytes(), &salt)?;
    Ok(format!("argon2id${}${}", hex::encode(salt), hex::encode(h)))
}

/// Checks a PIN against [`hash_pin`]'s output in constant time.
pub fn verify_pin(pin: &str, stored: &str) -> Result<bool> {
    let mut parts = stored.split('$');
    let (Some("argon2id"), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(false);
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(salt), hex::decode(hash)) else {
        return Ok(false);
    };
    let h = KdfParams::PIN.in_effect().derive(pin.as_bytes(), &salt)?;
    Ok(h.len() == hash.len() && h.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

/// Checks a password's length rule.
pub fn check_password(field: &str, password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(
            field,
            format!("password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks a PIN's form: 4–6 digits.
pub fn check_pin(field: &str, pin: &str) -> Result<()> {
    if !(4..=6).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(field, "PIN must be 4 to 6 digits"));
    }
    Ok(())
}

/// The recovery key as printed by `init`: base32 of the secret, in groups of 4.
pub fn format_recovery_key(key: &SigningKey) -> String {
    let s = data_encoding::BASE32_NOPAD.encode(key.as_bytes());
    s.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses a recovery key printed by [`format_recovery_key`].
pub fn parse_recovery_key(s: &str) -> Result<SigningKey> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .map_err(|_| Error::invalid("recovery_key", "not a recovery key"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::invalid("recovery_key", "not a recovery key"))?;
    Ok(SigningKey::from_bytes(&arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_key_opens_only_with_its_password() {
        let key = new_signing_key();
        let kdf = KdfParams::PIN; // cheap for the test
        let sealed = seal_key(&key, "correct horse battery", kdf).unwrap();
        let opened = unseal_key(&sealed, "correct horse battery")
            .unwrap()
            .unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert!(unseal_key(&sealed, "wrong password!").unwrap().is_none());
    }

    /// What every build that users run derives with: the real costs. `cargo test` runs this in
    /// its test build too, where the constants are the same and only `in_effect` differs.
    #[test]
    fn new_seals_use_the_strong_params_outside_a_debug_test_build() {
        assert_eq!(
            KdfParams::PASSWORD,
            KdfParams {
                m_kib: 64 * 1024,
                t: 3,
                p: 1
            }
        );
        assert_eq!(
            KdfParams::PIN,
            KdfParams {
                m_kib: 8 * 1024,
                t: 1,
                p: 1
            }
        );
        assert_eq!(
            FAST_TEST_KDF,
            cfg!(feature = "test-fast-kdf") && cfg!(debug_assertions)
        );
        if !FAST_TEST_KDF {
            assert_eq!(KdfParams::PASSWORD.in_effect(), KdfParams::PASSWORD);
            assert_eq!(KdfParams::PIN.in_effect(), KdfParams::PIN);
        }
    }

    /// `cargo test` (debug) builds with `test-fast-kdf`: its new seals are cheap but still
    /// argon2id, record their parameters, and open only with the right password.
    #[test]
    fn the_test_build_seals_with_cheap_recorded_params() {
        // Cargo.toml's dev-dependency of the package on itself turns the feature on in
        // `cargo test`; a release-profile test build ignores it.
        assert_eq!(FAST_TEST_KDF, cfg!(debug_assertions));
        let key = new_signing_key();
        let sealed = seal_key(&key, "correct horse battery", KdfParams::PASSWORD).unwrap();
        if FAST_TEST_KDF && std::env::var_os(STRONG_KDF_ENV).is_none() {
            assert!(
                sealed.kdf.m_kib < 1024 && sealed.kdf.t == 1,
                "{:?}",
                sealed.kdf
            );
        } else {
            assert_eq!(sealed.kdf, KdfParams::PASSWORD);
        }
        let opened = unseal_key(&sealed, "correct horse battery")
            .unwrap()
            .unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert!(unseal_key(&sealed, "wrong password!").unwrap().is_none());
    }

    #[test]
    fn pin_hash_round_trip() {
        let h = hash_pin("1234").unwrap();
        assert!(verify_pin("1234", &h).unwrap());
        assert!(!verify_pin("1235", &h).unwrap());
        assert!(!verify_pin("1234", "garbage").unwrap());
    }

    #[test]
    fn recovery_key_round_trip() {
        let key = new_signing_key();
        let printed = format_recovery_key(&key);
        assert_eq!(
            parse_recovery_key(&printed).unwrap().as_bytes(),
            key.as_bytes()
        );
        assert!(parse_recovery_key("not-a-key").is_err());
    }

    #[test]
    fn device_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("device.key");
        let a = load_or_create_device_key(&p).unwrap();
        let b = load_or_create_device_key(&p).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
