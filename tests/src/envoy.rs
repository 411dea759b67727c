//! Starts a real Envoy on loopback and talks to its admin API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tools::Tool;

/// A running Envoy process, killed when dropped. Its admin API listens on loopback.
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` (YAML or JSON). The bootstrap's admin address is replaced with a
    /// loopback port chosen by Envoy itself, read back through `--admin-address-path`.
    pub fn start(bootstrap: &serde_json::Value) -> anyhow::Result<Envoy> {
        Envoy::start_with(bootstrap, None)
    }

    /// Like [`Envoy::start`], inside the network namespace `netns` (`ip netns exec`): its admin API
    /// and listeners are reachable only from there.
    pub fn start_in_netns(bootstrap: &serde_json::Value, netns: &str) -> anyhow::Result<Envoy> {
        Envoy::start_with(bootstrap, Some(netns))
    }

    fn start_with(bootstrap: &serde_json::Value, netns: Option<&str>) -> anyhow::Result<Envoy> {
        let envoy = Tool::Envoy.path()?;
        let dir = tempfile::tempdir()?;
        let mut bootstrap = bootstrap.clone();
        bootstrap["admin"] = serde_json::json!({
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } }
        });
        let config = dir.path().join("bootstrap.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap)?)?;
        let admin_file = dir.path().join("admin-address");
        let log = std::fs::File::create(dir.path().join("envoy.log"))?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&envoy);
                c
            }
            None => Command::new(&envoy),
        };
        let child = command
            .arg("--config-path")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", envoy.display()))?;
        let mut envoy = Envoy { child, admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), dir };
        envoy.admin = envoy.wait_for_admin_address(&admin_file)?;
        Ok(envoy)
    }

    fn wait_for_admin_address(&mut self, file: &std::path::Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("envoy exited with {status} before its admin API came up:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(file)
                && let Ok(addr) = text.trim().parse()
            {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("envoy's admin API did not come up within 30s:\n{}", self.log())
    }

    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// The directory holding the bootstrap and log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// GETs an admin path (e.g. `/ready`), returning the status code and body.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let resp = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?
            .get(format!("http://{}{}", self.admin, path))
            .send()
            .await
            .with_context(|| format!("GET {path} from envoy admin {}", self.admin))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// Waits (bounded) until `/ready` answers `LIVE`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.admin_get("/ready").await {
                Ok((200, body)) if body.trim() == "LIVE" => return Ok(()),
                Ok((code, body)) => last = format!("{code} {}", body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("envoy not ready within {timeout:?} (last answer: {last}):\n{}", self.log())
    }

    /// Envoy's `/config_dump` (add a query such as `?include_eds`), parsed.
    pub async fn config_dump(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let (code, body) = self.admin_get(&format!("/config_dump{query}")).await?;
        if code != 200 {
            bail!("config_dump answered {code}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port that is free right now (the OS picks it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
