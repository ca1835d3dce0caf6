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
    /// Log format: `human` (default) or `json` (one JSON object per line). `log_json = true`
    /// means `json` too.
    pub log_format: LogFormat,
    /// Mesh listen address (multiaddr). Default `/ip4/0.0.0.0/tcp/7879`.
    pub listen: String,
    /// Static peers (multiaddrs) dialed at start and redialed with backoff. Default none.
    pub peers: Vec<String>,
    /// Find shop peers by mDNS. Default `true`.
    pub mdns: bool,
    /// Interfaces mDNS uses; empty = every non-loopback interface. Default empty.
    pub mdns_interfaces: Vec<String>,
    /// Host names the web UI answers to besides IP addresses, `localhost` and the machine's own
    /// names (e.g. a name the shop's router gives the till). Default none.
    pub allowed_hosts: Vec<String>,
}

/// How the node writes its logs (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Lines for people: time, level, target, message and fields.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`) for log
    /// collectors (journald, Loki …).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(Error::invalid(
                "log_format",
                format!("log format must be human or json, not {other:?}"),
            )),
        }
    }
}

impl Config {
    /// Whether logs are JSON lines (`log_format = "json"` or `log_json = true`).
    pub fn json_logs(&self) -> bool {
        self.log_json || self.log_format == LogFormat::Json
    }
}

/// One setting: its TOML key, flag, environment variable, default and meaning. [`SETTINGS`]
/// lists them all; the command line (`node/main.rs`) uses the same names, the tests check that
/// every [`Config`] field and every flag is listed, and [`reference()`] turns the list into the
/// configuration reference of the README (`tillmesh config --reference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Key in the TOML file (`None`: only a flag or variable, e.g. the file's own path).
    pub key: Option<&'static str>,
    /// Command-line flag.
    pub flag: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default value, in words.
    pub default: &'static str,
    /// What it does.
    pub about: &'static str,
}

/// Every setting of `tillmesh run`, in the order of the reference.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: Some("data_dir"),
        flag: "--data-dir",
        env: "TILLMESH_DATA_DIR",
        default: "`$XDG_DATA_HOME/tillmesh` or `~/.local/share/tillmesh`",
        about: "Data directory: the store file `tillmesh.redb`, the device key `device.key` (0600) and remembered peers.",
    },
    Setting {
        key: Some("http"),
        flag: "--http",
        env: "TILLMESH_HTTP",
        default: "`127.0.0.1:7878`",
        about: "Address of the web UI, the API and `/metrics` (use `0.0.0.0:7878` so other devices can open the UI).",
    },
    Setting {
        key: Some("listen"),
        flag: "--listen",
        env: "TILLMESH_LISTEN",
        default: "`/ip4/0.0.0.0/tcp/7879`",
        about: "Mesh listen address (multiaddr).",
    },
    Setting {
        key: Some("peers"),
        flag: "--peer",
        env: "TILLMESH_PEERS",
        default: "none, plus `DATA_DIR/peers`",
        about: "Static peers to dial and keep dialing (multiaddrs; the flag repeats, the variable is comma-separated).",
    },
    Setting {
        key: Some("mdns"),
        flag: "--no-mdns",
        env: "TILLMESH_NO_MDNS",
        default: "`true` (mDNS on)",
        about: "Find the shop's other devices by mDNS; the flag (or the variable set to `true`) turns it off.",
    },
    Setting {
        key: Some("mdns_interfaces"),
        flag: "--mdns-interface",
        env: "TILLMESH_MDNS_INTERFACES",
        default: "every non-loopback interface",
        about: "Interfaces mDNS uses (the flag repeats, the variable is comma-separated).",
    },
    Setting {
        key: Some("allowed_hosts"),
        flag: "--allowed-host",
        env: "TILLMESH_ALLOWED_HOSTS",
        default: "none",
        about: "Host names the web UI answers to besides IP addresses, `localhost`, this machine's host name, `HOSTNAME.local` and the node's mDNS name; requests for any other `Host` get `421` (this stops DNS rebinding). The flag repeats, the variable is comma-separated.",
    },
    Setting {
        key: Some("log_format"),
        flag: "--log-format",
        env: "TILLMESH_LOG_FORMAT",
        default: "`human`",
        about: "`human` or `json` (one JSON object per line, for journald or a log collector). Logs go to stderr; the level is set by `TILLMESH_LOG` (tracing `EnvFilter` syntax, default `info`).",
    },
    Setting {
        key: Some("log_json"),
        flag: "--log-json",
        env: "TILLMESH_LOG_JSON",
        default: "`false`",
        about: "Same as `log_format = \"json\"` (kept for existing set-ups).",
    },
    Setting {
        key: None,
        flag: "--config",
        env: "TILLMESH_CONFIG",
        default: "`~/.config/tillmesh/config.toml` if present",
        about: "The TOML file itself.",
    },
];

/// The configuration reference (Markdown), generated from [`SETTINGS`]; README.md carries a
/// copy between `<!-- config-reference -->` markers that a test keeps equal to this.
pub fn reference() -> String {
    let mut out =
        String::from("| TOML key | flag | environment | default | |\n|---|---|---|---|---|\n");
    for s in SETTINGS {
        let key = s
            .key
            .map(|k| format!("`{k}`"))
            .unwrap_or_else(|| "(the file itself)".into());
        out.push_str(&format!(
            "| {key} | `{}` | `{}` | {} | {} |\n",
            s.flag, s.env, s.default, s.about
        ));
    }
    out
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
            log_format: LogFormat::Human,
            listen: DEFAULT_LISTEN.into(),
            peers: Vec::new(),
            mdns: true,
            mdns_interfaces: Vec::new(),
            allowed_hosts: Vec::new(),
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

    /// Every field of [`Config`] has a line in the reference, and every key there is a field.
    #[test]
    fn the_reference_lists_every_field() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let fields: std::collections::BTreeSet<&str> = value
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let listed: std::collections::BTreeSet<&str> =
            SETTINGS.iter().filter_map(|s| s.key).collect();
        assert_eq!(fields, listed);
        let text = reference();
        for s in SETTINGS {
            assert!(text.contains(s.flag) && text.contains(s.env), "{s:?}");
        }
    }

    #[test]
    fn log_format_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "log_format = \"json\"\n").unwrap();
        let c = Config::load(Some(&p), true).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.json_logs());
        assert!(!Config::default().json_logs());
        std::fs::write(&p, "log_format = \"xml\"\n").unwrap();
        assert!(Config::load(Some(&p), true).is_err());
        assert!("xml".parse::<LogFormat>().is_err());
    }

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
