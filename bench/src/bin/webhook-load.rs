//! Load benchmark of mesh-webhook: keep-alive TLS connections post the real AdmissionReview the API
//! server sends for a pod, for a fixed time, against (1) mesh-webhook and (2) a bare server on the
//! same stack (rustls + hyper + axum + the webhook's listener) that answers a fixed response: the
//! bytes mesh-webhook answered to the same review, so both move the same bytes and only the work
//! behind the answer differs.
//! Prints throughput and p50/p99/p999 latency for both; the last line is
//! `webhook/echo throughput ratio: R`.
//!
//! The review is the API server's review of a ReplicaSet's pod (`--review` for another). Every
//! review has its own uid, as the API server sends them. By default the reviews are what a real API
//! server sends for a Deployment's replicas: each replica has its own generated service-account
//! token volume name (`kube-api-access-<5 random characters>`, in the volume and in every mount),
//! and each is followed by its re-review (`reinvocationPolicy: IfNeeded`: the injected pod, with the
//! token mounted in the injected containers too). `--exact-replicas` sends byte-identical replicas
//! (one token name), `--distinct` gives every review its own pod (a label with a counter).
//!
//! The targets take turns (`--rounds`, 5 by default: 2 s each, after 0.5 s of warm-up), so that a
//! drift of the machine's speed affects both alike. Each server runs one worker thread unless
//! `--server-workers` says otherwise (see there).
//!
//! Usage: `cargo run --release -p mesh-bench --bin webhook-load -- [--connections 64] [--seconds 10]
//! [--rounds 5] [--server-workers 1] [--distinct | --exact-replicas] [--review FILE]` (builds and runs `mesh-webhook`
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
    /// mesh-webhook's review cache, as for StatefulSet, DaemonSet or bare pods; no re-reviews.
    /// Without it (and without --exact-replicas) the reviews are replicas as a real API server
    /// sends them: each with its own random `kube-api-access-*` token volume name, each followed
    /// by its re-review.
    #[arg(long, conflicts_with = "exact_replicas")]
    distinct: bool,
    /// Send byte-identical replicas of one pod (only the uid differs; one token volume name), no
    /// re-reviews: the review cache's best case.
    #[arg(long)]
    exact_replicas: bool,
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
    /// Internal: the file with the echo server's fixed response to re-reviews.
    #[arg(long, hide = true)]
    echo_re_response: Option<PathBuf>,
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
        let re_response = match &args.echo_re_response {
            Some(path) => std::fs::read(path).with_context(|| path.display().to_string())?,
            None => response.clone(),
        };
        return runtime.block_on(echo_server(addr, &args.echo_tls, Bytes::from(response), Bytes::from(re_response)));
    }
    runtime.block_on(bench(args))
}

/// The header that tells the echo server a request is a re-review (mesh-webhook ignores it).
const KIND_HEADER: &str = "x-webhook-load-kind";

async fn echo_server(addr: SocketAddr, tls: &[PathBuf], response: Bytes, re_response: Bytes) -> anyhow::Result<()> {
    let [cert, key] = tls else { bail!("--echo-tls CERT KEY") };
    let store = Arc::new(mesh_webhook::tls::CertStore::new());
    store.set(mesh_webhook::tls::certified_key(&std::fs::read(cert)?, &std::fs::read(key)?)?);
    let config = Arc::new(mesh_webhook::tls::server_config(store)?);
    let app = axum::Router::new().route(
        "/inject",
        axum::routing::post(move |headers: http::HeaderMap, _body: Bytes| {
            let response = if headers.contains_key(KIND_HEADER) { re_response.clone() } else { response.clone() };
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
    /// The latencies of re-reviews alone (also in `latencies_us`).
    re_review_latencies_us: Vec<u32>,
}

impl Result_ {
    fn throughput(&self) -> f64 {
        self.reviews as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p)
    }
}

/// The `p` quantile of sorted latencies, in ms.
fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
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
    post_once_as(addr, config, body, false).await
}

/// Posts the review (marked as a re-review for the echo server when `re_review`) once.
async fn post_once_as(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    body: Bytes,
    re_review: bool,
) -> anyhow::Result<Bytes> {
    let mut sender = connect(addr, config).await?;
    let mut request = http::Request::post("/inject")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    if re_review {
        request.headers_mut().insert(KIND_HEADER, http::HeaderValue::from_static("re-review"));
    }
    let response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::OK {
        bail!("answered {}", response.status());
    }
    Ok(response.into_body().collect().await?.to_bytes())
}

/// What the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Replicas with their own token volume names, each followed by its re-review.
    ApiServer,
    /// Byte-identical replicas (only the uid differs).
    ExactReplicas,
    /// Every pod different (a label with a counter).
    Distinct,
}

/// The prefix of the API server's generated service-account token volume names.
const TOKEN_PREFIX: &str = "kube-api-access-";

/// The characters the API server's generated names use (k8s.io/apimachinery's `rand.String`).
const TOKEN_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A review's text split where the uid, the token volume's name (every mention) and, for distinct
/// pods, a label go: `pieces[0]` uid `pieces[1]` (token `pieces[i]`)*, with a label inserted
/// after `labels_at` bytes of the last piece (the start of `metadata.labels`).
struct Template {
    pieces: Vec<Bytes>,
    labels_at: Option<usize>,
}

impl Template {
    fn new(review: &[u8], token: Option<&str>) -> anyhow::Result<Template> {
        let find = |what: &[u8], from: usize| {
            review[from..].windows(what.len()).position(|w| w == what).map(|i| from + i + what.len())
        };
        let uid_start = find(b"\"uid\":\"", 0).context("no uid in the review")?;
        let uid_end = find(b"\"", uid_start).context("unterminated uid")? - 1;
        let mut pieces = vec![Bytes::copy_from_slice(&review[..uid_start])];
        let mut from = uid_end;
        if let Some(token) = token {
            while let Some(end) = find(token.as_bytes(), from) {
                pieces.push(Bytes::copy_from_slice(&review[from..end - token.len()]));
                from = end;
            }
        }
        // Only distinct pods get a label, and those never have token pieces.
        let labels_at = find(b"\"labels\":{", from).map(|labels| labels - from);
        pieces.push(Bytes::copy_from_slice(&review[from..]));
        Ok(Template { pieces, labels_at })
    }

    fn body(&self, uid: &str, token: &str, label: Option<&str>) -> Bytes {
        let len: usize = self.pieces.iter().map(Bytes::len).sum();
        let mut body = Vec::with_capacity(len + 64 * self.pieces.len());
        body.extend_from_slice(&self.pieces[0]);
        body.extend_from_slice(uid.as_bytes());
        let last = self.pieces.len() - 1;
        for (i, piece) in self.pieces.iter().enumerate().skip(1) {
            if i > 1 {
                body.extend_from_slice(token.as_bytes());
            }
            match (label, self.labels_at) {
                (Some(label), Some(at)) if i == last => {
                    body.extend_from_slice(&piece[..at]);
                    body.extend_from_slice(label.as_bytes());
                    body.extend_from_slice(&piece[at..]);
                }
                _ => body.extend_from_slice(piece),
            }
        }
        Bytes::from(body)
    }
}

/// The generated token volume name of replica `n`: `kube-api-access-` and five characters, as the
/// API server makes them (pseudo-random from `n`, so runs repeat).
fn token_name(n: u64) -> String {
    // splitmix64
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut name = String::from(TOKEN_PREFIX);
    for i in 0..5 {
        let c = TOKEN_ALPHABET[((z >> (i * 12)) % TOKEN_ALPHABET.len() as u64) as usize];
        name.push(char::from(c));
    }
    name
}

/// The token volume name a review's pod carries, if any.
fn token_of(review: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(review).ok()?;
    let at = text.find(TOKEN_PREFIX)?;
    let name = text.get(at..at + TOKEN_PREFIX.len() + 5)?;
    name[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric()).then(|| name.to_string())
}

/// The reviews of a run.
struct Reviews {
    mode: Mode,
    first: Template,
    /// The re-review of the injected pod ([`Mode::ApiServer`]).
    re_review: Option<Template>,
}

impl Reviews {
    /// The reviews for `mode` from the `review`; `re_review` is the text of its re-review (the
    /// injected pod with the token mounted in every container), needed for [`Mode::ApiServer`].
    fn new(review: &[u8], mode: Mode, re_review: Option<&[u8]>) -> anyhow::Result<Reviews> {
        let token = token_of(review);
        if mode == Mode::ApiServer && token.is_none() {
            bail!("the review's pod has no {TOKEN_PREFIX}* volume: use --exact-replicas or --distinct");
        }
        let token = token.filter(|_| mode == Mode::ApiServer);
        let first = Template::new(review, token.as_deref())?;
        if mode == Mode::Distinct && first.labels_at.is_none() {
            bail!("no labels in the review's pod (--distinct adds one)");
        }
        let re_review = match (mode, re_review) {
            (Mode::ApiServer, Some(text)) => Some(Template::new(text, token.as_deref())?),
            (Mode::ApiServer, None) => bail!("the api-server mode needs the re-review"),
            _ => None,
        };
        Ok(Reviews { mode, first, re_review })
    }

    /// Request `n`: its body and whether it is a re-review. Each has its own uid, as the API server
    /// sends; in [`Mode::ApiServer`] even requests are replicas with their own token volume name and
    /// odd ones their re-reviews, in [`Mode::Distinct`] every pod is different.
    fn body(&self, n: u64) -> (Bytes, bool) {
        let uid = format!("load-{n:016x}");
        match (self.mode, &self.re_review) {
            (Mode::ApiServer, Some(re_review)) => {
                let token = token_name(n / 2);
                if n % 2 == 1 {
                    (re_review.body(&uid, &token, None), true)
                } else {
                    (self.first.body(&uid, &token, None), false)
                }
            }
            (Mode::Distinct, _) => (self.first.body(&uid, "", Some(&format!("\"mesh-load-pod\":\"{n}\","))), false),
            _ => (self.first.body(&uid, "", None), false),
        }
    }
}

/// The re-review of `review` after `answer` (mesh-webhook's answer to it): the patch applied to the
/// pod and the pod's token volume mounted, as the ServiceAccount plugin does, in every container
/// and init container without a mount at the token path.
fn re_review_of(review: &[u8], answer: &[u8]) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let mut review: serde_json::Value = serde_json::from_slice(review)?;
    let answer: serde_json::Value = serde_json::from_slice(answer)?;
    let patch = answer.pointer("/response/patch").and_then(|p| p.as_str()).context("the answer has no patch")?;
    let patch: json_patch::Patch = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch)?)?;
    let pod = review.pointer_mut("/request/object").context("the review has no object")?;
    json_patch::patch(pod, &patch)?;
    let token = pod
        .pointer("/spec/volumes")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_PREFIX))
        .context("the pod has no token volume")?
        .to_string();
    let path = "/var/run/secrets/kubernetes.io/serviceaccount";
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod.pointer_mut(&format!("/spec/{list}")).and_then(|c| c.as_array_mut()) else {
            continue;
        };
        for c in containers {
            let Some(fields) = c.as_object_mut() else { continue };
            let mounts = fields.entry("volumeMounts").or_insert_with(|| serde_json::json!([]));
            if let Some(mounts) = mounts.as_array_mut()
                && !mounts.iter().any(|m| m["mountPath"] == path)
            {
                mounts.push(serde_json::json!({"name": token, "readOnly": true, "mountPath": path}));
            }
        }
    }
    Ok(serde_json::to_vec(&review)?)
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
            let mut re_latencies = Vec::new();
            let mut errors = 0u64;
            let mut sender = match connect(addr, config.clone()).await {
                Ok(s) => s,
                Err(_) => return (latencies, re_latencies, 1),
            };
            loop {
                let sent_at = Instant::now();
                if sent_at >= until {
                    break;
                }
                let (body, re_review) = reviews.body(next);
                let mut request = http::Request::post("/inject")
                    .header("host", "localhost")
                    .header("content-type", "application/json");
                if re_review {
                    request = request.header(KIND_HEADER, "re-review");
                }
                let request = request.body(Full::new(body));
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
                        let us = u32::try_from((done - sent_at).as_micros()).unwrap_or(u32::MAX);
                        latencies.push(us);
                        if re_review {
                            re_latencies.push(us);
                        }
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
            (latencies, re_latencies, errors)
        }));
    }
    let (mut all, mut re_all) = (Vec::new(), Vec::new());
    let mut errors = 0;
    for task in tasks {
        let (latencies, re_latencies, e) = task.await?;
        all.extend(latencies);
        re_all.extend(re_latencies);
        errors += e;
    }
    Ok(Result_ {
        reviews: all.len() as u64,
        errors,
        elapsed: measured,
        latencies_us: all,
        re_review_latencies_us: re_all,
    })
}

impl Result_ {
    fn empty() -> Result_ {
        Result_ {
            reviews: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
            re_review_latencies_us: Vec::new(),
        }
    }

    fn add(&mut self, round: Result_) {
        self.reviews += round.reviews;
        self.errors += round.errors;
        self.elapsed += round.elapsed;
        self.latencies_us.extend(round.latencies_us);
        self.re_review_latencies_us.extend(round.re_review_latencies_us);
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
    if !r.re_review_latencies_us.is_empty() {
        let re = &r.re_review_latencies_us;
        println!(
            "{name}, re-reviews alone: {} re-reviews; latency p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms",
            re.len(),
            percentile(re, 0.50),
            percentile(re, 0.99),
            percentile(re, 0.999)
        );
    }
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
    let mode = if args.distinct {
        Mode::Distinct
    } else if args.exact_replicas {
        Mode::ExactReplicas
    } else {
        Mode::ApiServer
    };
    if mode == Mode::ApiServer && token_of(&body).is_none() {
        bail!("the review's pod has no {TOKEN_PREFIX}* volume: use --exact-replicas or --distinct");
    }
    println!(
        "webhook-load: {} keep-alive TLS connections, {} s per target in {} alternating rounds, {} worker thread(s) per server, body {} bytes ({}), {}",
        args.connections,
        args.seconds,
        args.rounds,
        if args.server_workers == 0 { "one per CPU".to_string() } else { args.server_workers.to_string() },
        body.len(),
        fixture.file_name().map_or_else(|| fixture.display().to_string(), |f| f.to_string_lossy().into_owned()),
        match mode {
            Mode::ApiServer => "replicas with their own token volume names, each followed by its re-review",
            Mode::ExactReplicas => "byte-identical replicas of one pod with their own uids",
            Mode::Distinct => "every pod different (no review-cache hits)",
        }
    );

    let response_file = dir.path().join("response.json");
    let re_response_file = dir.path().join("re-response.json");
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
    let re_review = match mode {
        Mode::ApiServer => {
            let text = Bytes::from(re_review_of(&body, &std::fs::read(&response_file)?)?);
            let answer = post_once_as(webhook.addr, config.clone(), text.clone(), true).await?;
            let answer_json: serde_json::Value = serde_json::from_slice(&answer)?;
            if answer_json.pointer("/response/patch").is_some() || answer_json["response"]["allowed"] != true {
                bail!("mesh-webhook patched the re-review: {}", String::from_utf8_lossy(&answer));
            }
            std::fs::write(&re_response_file, &answer)?;
            Some(text)
        }
        _ => None,
    };
    let reviews = Arc::new(Reviews::new(&body, mode, re_review.as_deref())?);
    let echo_server = {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--echo-server", "127.0.0.1:0", "--echo-tls"]).arg(&cert).arg(&key);
        command.arg(format!("--server-workers={}", args.server_workers));
        command.arg("--echo-response").arg(&response_file);
        if re_review.is_some() {
            command.arg("--echo-re-response").arg(&re_response_file);
        }
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
        let parse = |(b, _): (Bytes, bool)| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        let replicas = Reviews::new(review, Mode::ExactReplicas, None).unwrap();
        let (a, b) = (parse(replicas.body(1)), parse(replicas.body(2)));
        assert_eq!(a["request"]["uid"], "load-0000000000000001");
        assert_eq!(b["request"]["uid"], "load-0000000000000002");
        assert_eq!(a["request"]["object"], b["request"]["object"]);
        assert_eq!(a["request"]["object"]["metadata"]["labels"], serde_json::json!({"app": "foo"}));
        let distinct = Reviews::new(review, Mode::Distinct, None).unwrap();
        let (a, b) = (parse(distinct.body(1)), parse(distinct.body(2)));
        assert_eq!(
            a["request"]["object"]["metadata"]["labels"],
            serde_json::json!({"mesh-load-pod": "1", "app": "foo"})
        );
        assert_ne!(a["request"]["object"], b["request"]["object"]);
        assert!(Reviews::new(br#"{"request":{}}"#, Mode::ExactReplicas, None).is_err());
        assert!(Reviews::new(review, Mode::ApiServer, Some(review)).is_err(), "no token volume");
    }

    #[test]
    fn api_server_replicas_have_their_own_token_names_and_their_re_reviews() {
        let review =
            mesh_test_data::read_shared("fixtures/kube-apiserver/admissionreview-v1-pod-generatename-owner.json")
                .unwrap();
        let token = token_of(&review).unwrap();
        assert_eq!(token, "kube-api-access-8mhdn");
        let patch = serde_json::json!([{"op": "add", "path": "/spec/containers/-",
            "value": {"name": "istio-proxy", "image": "proxy"}}]);
        let answer = serde_json::json!({"response": {"uid": "u", "allowed": true, "patchType": "JSONPatch",
            "patch": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, patch.to_string())}});
        let re_review = re_review_of(&review, answer.to_string().as_bytes()).unwrap();
        let reviews = Reviews::new(&review, Mode::ApiServer, Some(&re_review)).unwrap();
        let text = |(b, re): (Bytes, bool)| (String::from_utf8(b.to_vec()).unwrap(), re);
        let (first, re) = text(reviews.body(0));
        assert!(!re);
        let name = token_name(0);
        assert_eq!(
            first,
            String::from_utf8(review.clone())
                .unwrap()
                .replace(&token, &name)
                .replace("b84de132-cde4-4378-a054-eb4b352ec037", "load-0000000000000000")
        );
        let (again, re) = text(reviews.body(1));
        assert!(re);
        let again: serde_json::Value = serde_json::from_str(&again).unwrap();
        let proxy = &again["request"]["object"]["spec"]["containers"][1];
        assert_eq!(proxy["name"], "istio-proxy");
        assert_eq!(proxy["volumeMounts"][0]["name"], name.as_str(), "the plugin mounted the replica's token");
        assert!(!again.to_string().contains(&token));
        let (third, _) = text(reviews.body(2));
        assert!(third.contains(&token_name(1)) && token_name(1) != name);
        assert!(token_name(7).len() == 21 && token_name(7)[16..].bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
    }
}
