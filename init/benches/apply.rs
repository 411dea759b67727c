//! Median wall time of `mesh-init` applying the default sidecar rules in a fresh network
//! namespace, per backend. Needs root, `ip`, iptables and nft. Run: `cargo bench -p mesh-init`.

use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 25;
const DEFAULT_ARGS: [&str; 17] = mesh_core::capture::ISTIO_DEFAULT_INIT_ARGS;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e} (install iproute2)"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// One apply in a fresh namespace: (wall time of `ip netns exec mesh-init ...`, mesh-init's own
/// apply time from its `elapsed_ms` log field).
fn once(backend: &str, extra: &[&str], i: usize) -> Result<(Duration, f64), String> {
    let ns = format!("mi-bench-{}-{i}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let result = (|| {
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let start = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_mesh-init")])
            .args(DEFAULT_ARGS)
            .args(extra)
            .output()
            .map_err(|e| e.to_string())?;
        let elapsed = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("{backend}: {stderr}"));
        }
        let internal = stderr
            .split("elapsed_ms=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("no elapsed_ms in {stderr}"))?;
        Ok((elapsed, internal))
    })();
    let _ = ip(&["netns", "del", &ns]);
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), String> {
    for (backend, extra) in [("iptables", &[][..]), ("nftables", &["--native-nftables"][..])] {
        let runs: Vec<(Duration, f64)> = (0..RUNS).map(|i| once(backend, extra, i)).collect::<Result<_, _>>()?;
        let wall = median(runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect());
        let apply = median(runs.iter().map(|r| r.1).collect());
        println!(
            "{backend:9} median apply {apply:6.1} ms (detect + save + restore + verify), \
             median wall {wall:6.1} ms (incl. process start and ip netns exec), {RUNS} fresh namespaces"
        );
    }
    Ok(())
}
