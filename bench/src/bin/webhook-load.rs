//! Load benchmark of mesh-webhook: keep-alive TLS connections post the real AdmissionReview the API
//! server sends for a pod, for a fixed time, against (1) mesh-webhook and (2) a bare server on the
//! same stack (rustls + hyper + axum + the webhook's listener) that answers a fixed response: the
//! bytes mesh-webhook answered to the same review, so both move the same bytes and only the work
//! behind the answer differs.
//! Prints throughput and p50/p99/p999 latency for both; the last line is
//! `webhook/echo throughput ratio: R`.
//!
//! The review is the API server's review of a ReplicaSet's pod (`--review` for another). Every
//! review has its own uid, as the API server sends them; the pod is the same (replicas of a
//! Deployment, answered from mesh-webhook's review cache after the first) unless `--distinct` gives
//! every review its own pod.
//!
//! The targets take turns (`--rounds`, 5 by default: 2 s each, after 0.5 s of warm-up), so that a
//! drift of the machine's speed affects both alike. Each server runs one worker thread unless
//! `--server-workers` says otherwise (see there).
//!
//! Usage: `cargo run --release -p mesh-bench --bin webhook-load -- [--connections 64] [--seconds 10]
//! [--rounds 5] [--server-workers 1] [--distinct] [--review FILE]` (builds and runs `mesh-webhook`
//! from the same target directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Debug, Parser)]
#[command(name = "webhook-load", about = "Load benchmark of mesh-webhook against a bare TLS server on the same stack")]
struct Args {
    /// Concurrent keep-alive TLS connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per target, split over --rounds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The targets take turns this many times (each turn after 0.5 s of warm-up), so that a
    /// drift of the machine's speed during the run affects both alike.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Make every pod different (a label with a counter), so that no review is answered from
    /// mesh-webhook's review cache. Without it the reviews are replicas of one pod, as for a
    /// Deployment's scale-up: only the uid differs.
    #[arg(long)]
    distinct: bool,
    /// The AdmissionReview to post (default: the API server's review of a ReplicaSet's pod,
    /// `shared/fixtures/kube-apiserver/admissionreview-v1-pod-generatename-owner.json`).
    #[arg(long)]
    review: Option<PathBuf>,
    /// Worker threads of each server, mesh-webhook (`--worker-threads`) and echo alike; 0: one per
    /// CPU. The load generator runs on the same cores with its own threads: with one worker each,
    /// a server has about one core, as it would with the API server on another machine, and the
    /// machine is not oversubscribed (more runnable threads than cores, which preempts servers in
    /// the middle of a request and adds milliseconds to the tail).
    #[arg(long, default_value_t = 1)]
    server_workers: u16,
    /// The mesh-webhook binary (default: next to this one).
    #[arg(long)]
    webhook: Option<PathBuf>,
    /// Internal: run the bare echo server on this address and print its address.
    #[arg(long, hide = true)]
    echo_server: Option<SocketAddr>,
    /// Internal: certificate and key of the echo server.
    #[arg(long, hide = true, num_args = 2)]
    echo_tls: Vec<PathBuf>,
    /// Internal: the file with the echo server's fixed response.
    #[arg(long, hide = true)]
    echo_response: Option<PathBuf>,
}

struct Target {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if args.echo_server.is_some() && args.server_workers > 0 {
        runtime.worker_threads(usize::from(args.server_workers));
    }
    let runtime = runtime.build()?;
    if let Some(addr) = args.echo_server {
        let Some(path) = &args.echo_response else { bail!("--echo-server needs --echo-response FILE") };
        let response = std::fs::read(path).with_context(|| path.display().to_string())?;
        return runtime.block_on(echo_server(addr, &args.echo_tls, Bytes::from(response)));
    }
    runtime.block_on(bench(args))
}

async fn echo_server(addr: SocketAddr, tls: &[PathBuf], response: Bytes) -> anyhow::Result<()> {
    let [cert, key] = tls else { bail!("--echo-tls CERT KEY") };
    let store = Arc::new(mesh_webhook::tls::CertStore::new());
    store.set(mesh_webhook::tls::certified_key(&std::fs::read(cert)?, &std::fs::read(key)?)?);
    let config = Arc::new(mesh_webhook::tls::server_config(store)?);
    let app = axum::Router::new().route(
        "/inject",
        axum::routing::post(move |_body: Bytes| {
            let response = response.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], response) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("{}", listener.local_addr()?);
    let limits = mesh_webhook::serve::Limits::default();
    mesh_webhook::serve::serve_tls(listener, config, app, limits, std::future::pending()).await;
    Ok(())
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no parent directory")?.join(name))
}

fn start(mut command: Command, what: &str) -> anyhow::Result<Target> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, stdout);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            let addr = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .filter(|v| v["message"] == "serving")
                .and_then(|v| v["listen"].as_str().map(str::to_string))
                .or_else(|| line.trim().parse::<SocketAddr>().ok().map(|a| a.to_string()));
            line.clear();
            if let Some(addr) = addr {
                let _ = tx.send(addr);
                // Keep draining stdout (the webhook logs every review) so the process never
                // blocks, in large reads, as a container runtime does.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                break;
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not start within 30 s");
        }
    };
    Ok(Target { child, addr: addr.parse()? })
}

struct Result_ {
    reviews: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Result_ {
    fn throughput(&self) -> f64 {
        self.reviews as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost")?, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Posts the review once and returns the answer's body.
async fn post_once(addr: SocketAddr, config: Arc<rustls::ClientConfig>, body: Bytes) -> anyhow::Result<Bytes> {
    let mut sender = connect(addr, config).await?;
    let request = http::Request::post("/inject")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::OK {
        bail!("answered {}", response.status());
    }
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The review split where each request's uid and, for distinct pods, a label go.
struct Reviews {
    parts: [Bytes; 3],
    distinct: bool,
}

impl Reviews {
    fn new(review: &[u8], distinct: bool) -> anyhow::Result<Reviews> {
        let find = |what: &[u8], from: usize| {
            review[from..].windows(what.len()).position(|w| w == what).map(|i| from + i + what.len())
        };
        let uid_start = find(b"\"uid\":\"", 0).context("no uid in the review")?;
        let uid_end = find(b"\"", uid_start).context("unterminated uid")? - 1;
        let labels = find(b"\"labels\":{", uid_end).context("no labels in the review's pod")?;
        Ok(Reviews {
            parts: [
                Bytes::copy_from_slice(&review[..uid_start]),
                Bytes::copy_from_slice(&review[uid_end..labels]),
                Bytes::copy_from_slice(&review[labels..]),
            ],
            distinct,
        })
    }

    /// Review `n`: its own uid, as the API server sends, and with `distinct` its own pod.
    fn body(&self, n: u64) -> Bytes {
        let [head, middle, tail] = &self.parts;
        let mut body = Vec::with_capacity(head.len() + middle.len() + tail.len() + 64);
        body.extend_from_slice(head);
        body.extend_from_slice(format!("load-{n:016x}").as_bytes());
        body.extend_from_slice(middle);
        if self.distinct {
            body.extend_from_slice(format!("\"mesh-load-pod\":\"{n}\",").as_bytes());
        }
        body.extend_from_slice(tail);
        Bytes::from(body)
    }
}

async fn load(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    reviews: Arc<Reviews>,
    connections: usize,
    measured: Duration,
) -> anyhow::Result<Result_> {
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + measured;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (config, reviews) = (config.clone(), reviews.clone());
        let mut next = (connection as u64) << 40;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16 * 1024);
            let mut errors = 0u64;
            let mut sender = match connect(addr, config.clone()).await {
                Ok(s) => s,
                Err(_) => return (latencies, 1),
            };
            loop {
                let sent_at = Instant::now();
                if sent_at >= until {
                    break;
                }
                let request = http::Request::post("/inject")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(reviews.body(next)));
                next += 1;
                let ok = match request {
                    Ok(request) => match sender.send_request(request).await {
                        Ok(response) => {
                            let ok = response.status() == http::StatusCode::OK;
                            ok && response.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                let done = Instant::now();
                if sent_at >= measure_from {
                    if ok {
                        latencies.push(u32::try_from((done - sent_at).as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                if !ok || sender.ready().await.is_err() {
                    match connect(addr, config.clone()).await {
                        Ok(s) => sender = s,
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    Ok(Result_ { reviews: all.len() as u64, errors, elapsed: measured, latencies_us: all })
}

impl Result_ {
    fn empty() -> Result_ {
        Result_ { reviews: 0, errors: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() }
    }

    fn add(&mut self, round: Result_) {
        self.reviews += round.reviews;
        self.errors += round.errors;
        self.elapsed += round.elapsed;
        self.latencies_us.extend(round.latencies_us);
    }
}

fn report(name: &str, r: &Result_) {
    println!(
        "{name}: {} reviews in {:.1} s = {:.0} reviews/s; latency p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms; errors {}",
        r.reviews,
        r.elapsed.as_secs_f64(),
        r.throughput(),
        r.percentile(0.50),
        r.percentile(0.99),
        r.percentile(0.999),
        r.errors
    );
}

fn write_certs(dir: &Path) -> anyhow::Result<(String, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((ca_cert.pem(), cert_path, key_path))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca_pem, cert, key) = write_certs(dir.path())?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let fixture = match &args.review {
        Some(path) => path.clone(),
        None => {
            mesh_test_data::shared_dir()?.join("fixtures/kube-apiserver/admissionreview-v1-pod-generatename-owner.json")
        }
    };
    let body = Bytes::from(std::fs::read(&fixture).with_context(|| fixture.display().to_string())?);

    let webhook_bin = match args.webhook {
        Some(path) => path,
        None => sibling("mesh-webhook")?,
    };
    if !webhook_bin.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p mesh-webhook) or pass --webhook",
            webhook_bin.display()
        );
    }
    let reviews = Arc::new(Reviews::new(&body, args.distinct)?);
    println!(
        "webhook-load: {} keep-alive TLS connections, {} s per target in {} alternating rounds, {} worker thread(s) per server, body {} bytes ({}), {}",
        args.connections,
        args.seconds,
        args.rounds,
        if args.server_workers == 0 { "one per CPU".to_string() } else { args.server_workers.to_string() },
        body.len(),
        fixture.file_name().map_or_else(|| fixture.display().to_string(), |f| f.to_string_lossy().into_owned()),
        if args.distinct {
            "every pod different (no review-cache hits)"
        } else {
            "replicas of one pod with their own uids (review-cache hits)"
        }
    );

    let response_file = dir.path().join("response.json");
    let webhook = {
        let mut command = Command::new(&webhook_bin);
        command
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg(format!("--worker-threads={}", args.server_workers))
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            // The `serving` log line carries the bound address.
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST");
        let target = start(command, "mesh-webhook")?;
        // Readiness: the first request must succeed; its answer is what the echo server sends.
        let answer = post_once(target.addr, config.clone(), body.clone()).await.context("posting to mesh-webhook")?;
        let patched = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.pointer("/response/patch").and_then(|p| p.as_str()).map(str::len));
        if patched.is_none() {
            bail!("mesh-webhook did not inject the review: {}", String::from_utf8_lossy(&answer));
        }
        std::fs::write(&response_file, &answer)?;
        target
    };
    let echo_server = {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--echo-server", "127.0.0.1:0", "--echo-tls"]).arg(&cert).arg(&key);
        command.arg(format!("--server-workers={}", args.server_workers));
        command.arg("--echo-response").arg(&response_file);
        let target = start(command, "echo server")?;
        connect(target.addr, config.clone()).await.context("connecting to the echo server")?;
        target
    };
    let per_round = Duration::from_secs_f64(args.seconds as f64 / f64::from(args.rounds));
    let (mut results, mut echo) = (Result_::empty(), Result_::empty());
    let mut round_ratios = Vec::new();
    for _ in 0..args.rounds {
        let w = load(webhook.addr, config.clone(), reviews.clone(), args.connections, per_round).await?;
        let e = load(echo_server.addr, config.clone(), reviews.clone(), args.connections, per_round).await?;
        round_ratios.push(if e.throughput() > 0.0 { w.throughput() / e.throughput() } else { 0.0 });
        results.add(w);
        echo.add(e);
    }
    drop((webhook, echo_server));
    results.latencies_us.sort_unstable();
    echo.latencies_us.sort_unstable();
    report("mesh-webhook", &results);
    let answer_len = std::fs::metadata(&response_file)?.len();
    report(&format!("echo (same TLS/HTTP stack, mesh-webhook's {answer_len}-byte answer as a fixed response)"), &echo);
    let ratios: Vec<String> = round_ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!("per-round webhook/echo ratios: {}", ratios.join(" "));
    let ratio = if echo.throughput() > 0.0 { results.throughput() / echo.throughput() } else { 0.0 };
    println!("webhook/echo throughput ratio: {ratio:.2}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_get_their_own_uid_and_with_distinct_their_own_pod() {
        let review =
            br#"{"request":{"uid":"u-1","object":{"metadata":{"name":"foo","labels":{"app":"foo"}},"spec":{}}}}"#;
        let parse = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        let replicas = Reviews::new(review, false).unwrap();
        let (a, b) = (parse(replicas.body(1)), parse(replicas.body(2)));
        assert_eq!(a["request"]["uid"], "load-0000000000000001");
        assert_eq!(b["request"]["uid"], "load-0000000000000002");
        assert_eq!(a["request"]["object"], b["request"]["object"]);
        assert_eq!(a["request"]["object"]["metadata"]["labels"], serde_json::json!({"app": "foo"}));
        let distinct = Reviews::new(review, true).unwrap();
        let (a, b) = (parse(distinct.body(1)), parse(distinct.body(2)));
        assert_eq!(
            a["request"]["object"]["metadata"]["labels"],
            serde_json::json!({"mesh-load-pod": "1", "app": "foo"})
        );
        assert_ne!(a["request"]["object"], b["request"]["object"]);
        assert!(Reviews::new(br#"{"request":{}}"#, false).is_err());
    }
}
