//! mesh-webhook over real HTTPS: Istio conformance as real AdmissionReviews, certificate rotation
//! under load, config reload, and draining on SIGTERM under load.

use mesh_tests::support;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mesh_tests::apiserver::TestApiServer;
use mesh_tests::inject_cases::{self, Expect, NODE_KUBELET_VERSIONS};
use serde_json::{Value, json};
use support::{Conn, Sent, TestCa, Webhook, kubelet_update, review_body};

const READY: Duration = Duration::from_secs(60);

/// Every case of shared/conformance/istio-inject, as AdmissionReviews through a TLS connection to
/// the real binary. The nodes (kubelet 1.33 and 1.34) come from the test API server, so
/// `nativeSidecars: auto` is resolved by the webhook's node watch, as in a cluster. Cases with other
/// settings are served after a config reload of the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_conformance_over_https() -> anyhow::Result<()> {
    let cases = inject_cases::load_cases()?;
    let api = TestApiServer::start()?;
    for (i, version) in NODE_KUBELET_VERSIONS.iter().enumerate() {
        api.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i}")},
                       "status": {"nodeInfo": {"kubeletVersion": version}}}))?;
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let ca = TestCa::new();
    let (cert, key) = ca.serving("webhook");
    std::fs::write(dir.path().join("tls.crt"), &cert)?;
    std::fs::write(dir.path().join("tls.key"), &key)?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir)?;
    let mut version = 1;
    kubelet_update(&config_dir, version, &[("config.yaml", &cases[0].config_yaml)])?;

    let paths = |name: &str| dir.path().join(name).display().to_string();
    let config_path = config_dir.join("config.yaml").display().to_string();
    let webhook = Webhook::start(
        &["--tls-cert", &paths("tls.crt"), "--tls-key", &paths("tls.key"), "--config", &config_path],
        &[("KUBECONFIG", &kubeconfig.display().to_string())],
    )?;
    webhook.wait_ready(READY)?;
    let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;

    let mut current_config = cases[0].config_yaml.clone();
    let mut reloads = webhook.metric("mesh_webhook_config_reloads_total{result=\"ok\"}")?;
    let (mut passed, mut failures) = (0, Vec::new());
    for case in &cases {
        if case.config_yaml != current_config {
            version += 1;
            kubelet_update(&config_dir, version, &[("config.yaml", &case.config_yaml)])?;
            reloads += 1.0;
            webhook.wait_metric("mesh_webhook_config_reloads_total{result=\"ok\"}", reloads, READY)?;
            current_config = case.config_yaml.clone();
        }
        // Twice: the second time (other uids) every answer comes from the review cache.
        let hits = webhook.metric("mesh_webhook_review_cache_total{result=\"hit\"}").unwrap_or(0.0);
        let result = match run_case(&mut conn, case, "first").await {
            Ok(()) => run_case(&mut conn, case, "again").await.context("answered again"),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => passed += 1,
            Err(e) => failures.push(format!("{}: {e:#}", case.name)),
        }
        let hits_now = webhook.metric("mesh_webhook_review_cache_total{result=\"hit\"}")?;
        if hits_now - hits < case.pods.len() as f64 {
            failures.push(format!(
                "{}: {} cache hits for {} pods sent again",
                case.name,
                hits_now - hits,
                case.pods.len()
            ));
        }
    }
    for failure in &failures {
        eprintln!("FAIL {failure}\n");
    }
    println!("webhook conformance: {passed}/{}", cases.len());
    assert!(failures.is_empty(), "webhook conformance: {passed}/{}", cases.len());

    // One JSON log line per review, with the documented fields.
    let expected_reviews: usize = 2 * cases.iter().map(|c| c.pods.len()).sum::<usize>();
    let reviews = webhook.wait_logs("admission review", expected_reviews, READY)?;
    assert_eq!(reviews.len(), expected_reviews, "one log line per review");
    for line in &reviews {
        for field in ["namespace", "pod", "uid", "outcome", "reason", "cached", "elapsed_us"] {
            assert!(line.get(field).is_some(), "log line without {field}: {line}");
        }
    }
    assert!(webhook.metric("mesh_webhook_requests_total{outcome=\"injected\",reason=\"\"}")? > 0.0);
    assert!(webhook.metric("mesh_webhook_requests_total{outcome=\"denied\",reason=\"\"}")? >= 2.0);
    Ok(())
}

async fn run_case(conn: &mut Conn, case: &inject_cases::Case, pass: &str) -> anyhow::Result<()> {
    for (i, pod) in case.pods.iter().enumerate() {
        let uid = format!("{}-{i}-{pass}", case.name);
        let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        let body = match conn.post("/inject", review_body(&uid, namespace, pod)).await {
            Sent::Answered(200, _, body) => body,
            Sent::Answered(status, _, body) => bail!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            other => bail!("no answer: {other:?}"),
        };
        let outcome = support::apply_response(pod, &body, &uid)?;
        match (&case.expect, outcome) {
            (Expect::DenyContaining(text), Err(message)) => {
                if !message.to_lowercase().contains(&text.to_lowercase()) {
                    bail!("denial {message:?} does not mention {text:?}");
                }
            }
            (Expect::DenyContaining(text), Ok(_)) => bail!("allowed, want a denial mentioning {text:?}"),
            (Expect::Pods(_), Err(message)) => bail!("denied: {message}"),
            (Expect::Pods(golden), Ok(patched)) => {
                let diffs = inject_cases::compare(&patched, &golden[i])?;
                if !diffs.is_empty() {
                    bail!("{} differences:\n  {}", diffs.len(), diffs.join("\n  "));
                }
            }
        }
    }
    Ok(())
}

/// An invalid config is rejected, counted and logged, and the previous config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_keeps_the_previous_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let (cert, key) = ca.serving("webhook");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir)?;
    kubelet_update(&config_dir, 1, &[("config.yaml", "nativeSidecars: disabled\n")])?;
    std::fs::write(dir.path().join("tls.crt"), &cert)?;
    std::fs::write(dir.path().join("tls.key"), &key)?;
    let p = |name: &str| dir.path().join(name).display().to_string();
    let config_path = config_dir.join("config.yaml").display().to_string();
    let webhook =
        Webhook::start(&["--tls-cert", &p("tls.crt"), "--tls-key", &p("tls.key"), "--config", &config_path], &[])?;
    webhook.wait_ready(READY)?;
    kubelet_update(&config_dir, 2, &[("config.yaml", "nativeSidecarz: enabled\n")])?;
    webhook.wait_metric("mesh_webhook_config_reloads_total{result=\"failed\"}", 1.0, READY)?;
    let rejected = webhook.wait_logs("config rejected; keeping the previous one", 1, READY)?.remove(0);
    assert!(rejected["error"].as_str().unwrap_or("").contains("nativeSidecarz"), "{rejected}");
    // Still serving with the old config: istio-proxy is a regular container (nativeSidecars: disabled).
    let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;
    let review: Value = serde_json::from_slice(&support::fixture_review()?)?;
    let body = match conn.post("/inject", support::fixture_review()?).await {
        Sent::Answered(200, _, body) => body,
        other => bail!("unexpected: {other:?}"),
    };
    let uid = review["request"]["uid"].as_str().unwrap_or_default();
    let patched = support::apply_response(&review["request"]["object"], &body, uid)?.map_err(anyhow::Error::msg)?;
    let in_containers =
        patched["spec"]["containers"].as_array().into_iter().flatten().any(|c| c["name"] == "istio-proxy");
    assert!(in_containers, "nativeSidecars: disabled should still apply: {patched}");
    Ok(())
}

/// Certificate files replaced (the kubelet's `..data` swap) while clients post reviews without a
/// pause: no request fails, an old connection keeps working, and new connections get the new cert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let (cert_a, key_a) = ca.serving("cert-a");
    let (cert_b, key_b) = ca.serving("cert-b");
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir)?;
    kubelet_update(&tls_dir, 1, &[("tls.crt", &cert_a), ("tls.key", &key_a)])?;
    let p = |name: &str| tls_dir.join(name).display().to_string();
    let webhook = Webhook::start(&["--tls-cert", &p("tls.crt"), "--tls-key", &p("tls.key")], &[])?;
    webhook.wait_ready(READY)?;
    let body = support::fixture_review()?;
    let der_of = |pem: &str| CertificateDer::pem_slice_iter(pem.as_bytes()).next().and_then(Result::ok);
    let (der_a, der_b) = (der_of(&cert_a).context("cert a")?, der_of(&cert_b).context("cert b")?);

    let mut old_conn = Conn::open(webhook.listen, ca.client_config()).await?;
    assert_eq!(old_conn.peer_cert, der_a);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, answered, body, config, addr) =
            (stop.clone(), answered.clone(), body.clone(), ca.client_config(), webhook.listen);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // A fresh connection every 20 requests, so handshakes happen across the rotation.
                let mut conn = match Conn::open(addr, config.clone()).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        failures.push(format!("connect: {e:#}"));
                        continue;
                    }
                };
                for _ in 0..20 {
                    match conn.post("/inject", body.clone()).await {
                        Sent::Answered(200, _, _) => answered.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.push(format!("{other:?}"));
                            break;
                        }
                    };
                }
            }
            failures
        }));
    }
    // The clients are under way before the rotation...
    answered_at_least(&answered, 40).await?;
    kubelet_update(&tls_dir, 2, &[("tls.crt", &cert_b), ("tls.key", &key_b)])?;
    webhook.wait_metric("mesh_webhook_cert_reloads_total{result=\"ok\"}", 2.0, READY)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conn = Conn::open(webhook.listen, ca.client_config()).await?;
        if conn.peer_cert == der_b {
            break;
        }
        if Instant::now() > deadline {
            bail!("new connections still get the old certificate");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and go on after it, across fresh handshakes with the new certificate.
    let rotated_at = answered.load(Ordering::Relaxed);
    answered_at_least(&answered, rotated_at + 40).await?;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await?);
    }
    // The connection opened before the rotation still works.
    assert!(matches!(old_conn.post("/inject", body.clone()).await, Sent::Answered(200, _, _)));
    assert!(failures.is_empty(), "requests failed during rotation: {failures:?}");
    assert!(answered.load(Ordering::Relaxed) > 20, "too little load: {}", answered.load(Ordering::Relaxed));
    assert_eq!(webhook.metric("mesh_webhook_cert_reloads_total{result=\"failed\"}")?, 0.0);
    Ok(())
}

/// SIGTERM while clients post reviews: every request written on a connection gets a response (new
/// connections are refused), and the process exits 0 within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_review() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let (cert, key) = ca.serving("webhook");
    std::fs::write(dir.path().join("tls.crt"), &cert)?;
    std::fs::write(dir.path().join("tls.key"), &key)?;
    let p = |name: &str| dir.path().join(name).display().to_string();
    let drain = Duration::from_secs(5);
    let mut webhook =
        Webhook::start(&["--tls-cert", &p("tls.crt"), "--tls-key", &p("tls.key"), "--drain-timeout", "5s"], &[])?;
    webhook.wait_ready(READY)?;
    let body = support::fixture_review()?;
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (answered, body, config, addr) = (answered.clone(), body.clone(), ca.client_config(), webhook.listen);
        clients.push(tokio::spawn(async move {
            let mut lost = Vec::new();
            let mut closes = 0;
            let deadline = Instant::now() + Duration::from_secs(30);
            'connections: while Instant::now() < deadline {
                let Ok(mut conn) = Conn::open(addr, config.clone()).await else {
                    // Refused or reset while connecting: the server no longer accepts. Done.
                    break;
                };
                loop {
                    match conn.post("/inject", body.clone()).await {
                        Sent::Answered(200, headers, _) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            if headers.get("connection").is_some_and(|v| v == "close") {
                                closes += 1;
                                continue 'connections;
                            }
                        }
                        Sent::Answered(status, _, _) => lost.push(format!("HTTP {status}")),
                        Sent::Unsent => continue 'connections,
                        Sent::Lost(e) => {
                            lost.push(e);
                            continue 'connections;
                        }
                    }
                }
            }
            (lost, closes)
        }));
    }
    answered_at_least(&answered, 100).await?;
    let before = answered.load(Ordering::Relaxed);
    let signalled = Instant::now();
    webhook.sigterm()?;
    let status = webhook.wait_exit(drain + Duration::from_secs(5))?;
    let took = signalled.elapsed();
    let mut lost = Vec::new();
    let mut closes = 0;
    for client in clients {
        let (l, c) = tokio::time::timeout(Duration::from_secs(60), client).await??;
        lost.extend(l);
        closes += c;
    }
    assert!(status.success(), "exit status {status}");
    assert!(took <= drain + Duration::from_secs(1), "took {took:?} to exit, drain timeout {drain:?}");
    assert!(before > 50, "too little load before SIGTERM: {before}");
    assert!(lost.is_empty(), "reviews written but not answered: {lost:?}");
    assert!(closes > 0, "no response carried Connection: close during the drain");
    let drained = webhook.wait_logs("drained", 1, READY)?.remove(0);
    assert_eq!(drained["abandoned_connections"], 0, "{drained}");
    Ok(())
}

/// Waits (polling, at most 30 s) until the clients have had `n` reviews answered.
async fn answered_at_least(answered: &AtomicU64, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} reviews answered within 30 s", answered.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
