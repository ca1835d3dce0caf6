//! A running node's API, from the command line.

use super::*;

/// A client of a running node's HTTP API.
pub(super) struct ApiClient {
    pub(super) base: String,
    pub(super) token: String,
    pub(super) http: reqwest::Client,
}

impl ApiClient {
    pub(super) async fn connect(cfg: &Config, args: ApiArgs) -> anyhow::Result<ApiClient> {
        let base = args
            .api
            .unwrap_or_else(|| format!("http://{}", local_addr(cfg.http)))
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::new();
        let token = match args.token {
            Some(t) => t,
            None => {
                if !std::io::stdin().is_terminal() {
                    bail!(
                        "no token: pass --token or set TILLMESH_TOKEN (get one from POST /api/v1/login)"
                    );
                }
                let username = prompt("Username: ")?;
                let password = rpassword::prompt_password("Password: ")?;
                let resp = http
                    .post(format!("{base}/api/v1/login"))
                    .json(&serde_json::json!({"username": username, "password": password}))
                    .send()
                    .await
                    .with_context(|| format!("cannot reach the node at {base}"))?;
                let body: serde_json::Value = check(resp).await?.json().await?;
                body["token"]
                    .as_str()
                    .context("the login answer has no token")?
                    .to_string()
            }
        };
        Ok(ApiClient { base, token, http })
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        check(resp).await
    }

    pub(super) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        Ok(check(resp).await?.json().await?)
    }

    pub(super) async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.get(path).await?.json().await?)
    }

    pub(super) async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.get(path).await?.text().await?)
    }
}

/// Turns an API error body into a readable error.
pub(super) async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let msg = body["error"]["message"].as_str().unwrap_or("no details");
    bail!("the node answered {status}: {msg}")
}

/// A wildcard listen address is reached on loopback.
pub(super) fn local_addr(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
    } else {
        a
    }
}

pub(super) fn prompt(label: &str) -> anyhow::Result<String> {
    use std::io::Write;
    print!("{label}");
    std::io::stdout().flush()?;
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim().to_string())
}
