//! Node configuration: flags, `TILLMESH_*` environment variables and an optional TOML file share
//! names (`data_dir` ↔ `--data-dir` ↔ `TILLMESH_DATA_DIR`). Precedence: flag, then environment,
//! then the file, then the defaults below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the node keeps its data and serves its UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (store file and device key). Default: `$XDG_DATA_HOME/tillmesh`, else
    /// `~/.local/share/tillmesh`, else `./tillmesh-data`.
    pub data_dir: PathBuf,
    /// Address of the web UI and API. Default `127.0.0.1:7878` (use `0.0.0.0:7878` to let the
    /// shop's other devices open this node's UI).
    pub http: SocketAddr,
    /// Log as JSON lines instead of human-readable text. Default `false`.
    pub log_json: bool,
    /// Mesh listen address (multiaddr). Default `/ip4/0.0.0.0/tcp/7879`.
    pub listen: String,
    /// Static peers (multiaddrs) dialed at start and redialed with backoff. Default none.
    pub peers: Vec<String>,
    /// Find shop peers by mDNS. Default `true`.
    pub mdns: bool,
    /// Interfaces mDNS uses; empty = every non-loopback interface. Default empty.
    pub mdns_interfaces: Vec<String>,
}

/// The default mesh listen address.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/7879";

/// The default port of the web UI and API.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7878";

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            http: DEFAULT_HTTP.parse().expect("the default address parses"),
            log_json: false,
            listen: DEFAULT_LISTEN.into(),
            peers: Vec::new(),
            mdns: true,
            mdns_interfaces: Vec::new(),
        }
    }
}

/// The platform's default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("tillmesh");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/tillmesh");
    }
    PathBuf::from("tillmesh-data")
}

/// The default config file: `$XDG_CONFIG_HOME/tillmesh/config.toml` or
/// `~/.config/tillmesh/config.toml`.
pub fn default_config_file() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("tillmesh/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config/tillmesh/config.toml"))
}

impl Config {
    /// Loads `path` (required to exist if `explicit`), or the defaults.
    pub fn load(path: Option<&Path>, explicit: bool) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Invalid {
                field: Some("config".into()),
                message: format!("{}: {e}", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::Invalid {
                field: Some("config".into()),
                message: format!("cannot read {}: {e}", path.display()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "data_dir = \"/srv/till\"\nhttp = \"0.0.0.0:9000\"\n").unwrap();
        let c = Config::load(Some(&p), true).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/till"));
        assert_eq!(c.http.port(), 9000);
        std::fs::write(&p, "dat_dir = 1\n").unwrap();
        assert!(Config::load(Some(&p), true).is_err());
        assert!(Config::load(Some(&dir.path().join("missing.toml")), true).is_err());
        assert_eq!(
            Config::load(Some(&dir.path().join("missing.toml")), false).unwrap(),
            Config::default()
        );
    }
}
