//! mesh-webhook against slow and hostile clients over real TLS: request bodies that trickle in
//! (HTTP/1.1 with a length, chunked, an HTTP/2 stream) are answered 408 within the body timeout
//! while other connections are served; the review cache stays within its size with many tiny
//! entries (the process's RSS from /proc); path bytes that are not text are a counted 404.

use mesh_tests::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::json;
use support::{Conn, Sent, TestCa, Webhook, review_body};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const READY: Duration = Duration::from_secs(60);

fn start(ca: &TestCa, dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<Webhook> {
    let (cert, key) = ca.serving("webhook");
    std::fs::write(dir.join("tls.crt"), &cert)?;
    std::fs::write(dir.join("tls.key"), &key)?;
    let p = |name: &str| dir.join(name).display().to_string();
    let mut args = vec!["--tls-cert".to_string(), p("tls.crt"), "--tls-key".to_string(), p("tls.key")];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let webhook = Webhook::start(&args, &[])?;
    webhook.wait_ready(READY)?;
    Ok(webhook)
}

async fn tls_stream(
    webhook: &Webhook,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(webhook.listen).await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost")?, tcp).await?)
}

/// An HTTP/1.1 request whose head is complete and whose body then comes one byte (one TLS record)
/// every 100 ms; returns what the server sent back and when the connection ended.
async fn trickle_http1(webhook: &Webhook, ca: &TestCa, chunked: bool) -> anyhow::Result<(String, Duration)> {
    let mut tls = tls_stream(webhook, ca.client_config()).await?;
    let framing = if chunked { "Transfer-Encoding: chunked" } else { "Content-Length: 100000" };
    let head =
        format!("POST /inject HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    tls.write_all(head.as_bytes()).await?;
    tls.flush().await?;
    let started = Instant::now();
    let (mut read, mut write) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        for _ in 0..300 {
            let piece: &[u8] = if chunked { b"1\r\n{\r\n" } else { b"{" };
            if write.write_all(piece).await.is_err() || write.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer)).await;
    writer.abort();
    match ended {
        Ok(_) => Ok((String::from_utf8_lossy(&answer).into_owned(), started.elapsed())),
        Err(_) => bail!("connection still open after 30 s; received {:?}", String::from_utf8_lossy(&answer)),
    }
}

/// An HTTP/2 stream with a complete head and a body trickling in; returns its status (or the
/// reset) and the time it took.
async fn trickle_http2(webhook: &Webhook, ca: &TestCa) -> anyhow::Result<(Result<u16, String>, Duration)> {
    let mut config = (*ca.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tls_stream(webhook, Arc::new(config)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let writer = tokio::spawn(async move {
        for _ in 0..300 {
            if futures::SinkExt::send(&mut tx, Ok(Frame::data(Bytes::from_static(b"{")))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let request = http::Request::post("/inject")
        .header("content-type", "application/json")
        .body(StreamBody::new(rx))
        .context("request")?;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request)).await;
    writer.abort();
    let outcome = match answer {
        Err(_) => bail!("HTTP/2 stream not answered within 30 s"),
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(e.to_string()),
    };
    Ok((outcome, started.elapsed()))
}

/// Regression: a complete head followed by one body byte every few seconds held its connection
/// slot for ever (over HTTP/1.1 with a length, chunked, and HTTP/2 alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_answered_408_within_the_deadline_while_others_are_served() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let webhook = start(&ca, dir.path(), &["--body-timeout", "1s", "--max-connections", "4"])?;
    let (length, chunked, h2, served) = tokio::join!(
        trickle_http1(&webhook, &ca, false),
        trickle_http1(&webhook, &ca, true),
        trickle_http2(&webhook, &ca),
        async {
            // With the three slow clients holding three of the four slots, reviews keep being answered.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut answered = 0;
            for _ in 0..5 {
                let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;
                match conn.post("/inject", support::fixture_review()?).await {
                    Sent::Answered(200, _, _) => answered += 1,
                    other => bail!("a review during the slow bodies: {other:?}"),
                }
            }
            anyhow::Ok(answered)
        }
    );
    assert_eq!(served?, 5);
    // The deadline is 1 s from the head; the trickle would last 30 s. The bound leaves room for a
    // loaded machine without letting an unbounded body pass.
    let bound = Duration::from_secs(6);
    for (name, (answer, took)) in [("content-length", length?), ("chunked", chunked?)] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{name}: {answer:?}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{name}: {answer:?}");
        assert!(answer.contains("request body not received within 1000 ms"), "{name}: {answer:?}");
        assert!(took >= Duration::from_secs(1) && took < bound, "{name}: closed after {took:?}");
    }
    let (h2_answer, took) = h2?;
    assert!(matches!(h2_answer, Ok(408)) || h2_answer.is_err(), "HTTP/2: {h2_answer:?}");
    assert!(took >= Duration::from_secs(1) && took < bound, "HTTP/2: answered after {took:?}");
    webhook.wait_metric("mesh_webhook_requests_total{outcome=\"error\",reason=\"timeout\"}", 3.0, READY)?;
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS in /proc/<pid>/status")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
}

async fn post_tiny_reviews(webhook: &Webhook, ca: &TestCa, from: usize, count: usize) -> anyhow::Result<()> {
    let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;
    for i in from..from + count {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "t-", "labels": {"i": i.to_string()},
                         "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{"name": "a", "image": "a"}]}});
        match conn.post("/inject", review_body("u", "foo", &pod)).await {
            Sent::Answered(200, _, _) => {}
            other => bail!("tiny review {i}: {other:?}"),
        }
    }
    Ok(())
}

/// Regression: with `--review-cache-mib 32`, 200k small distinct reviews grew the RSS to 535 MB (a
/// key's allocated capacity was far larger than the length it was charged for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_cache_entries_stay_within_the_cache_size() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let mib = 4;
    let webhook = start(&ca, dir.path(), &["--review-cache-mib", "4", "--worker-threads", "2"])?;
    // Warm up: connections, TLS and allocator arenas exist before the baseline.
    post_tiny_reviews(&webhook, &ca, 0, 200).await?;
    let baseline = rss_kib(webhook.pid())?;
    let per_conn = 6_000;
    let conns = 4;
    let posts = (0..conns).map(|c| post_tiny_reviews(&webhook, &ca, 1_000 + c * per_conn, per_conn));
    for result in futures::future::join_all(posts).await {
        result?;
    }
    let misses = webhook.metric("mesh_webhook_review_cache_total{result=\"miss\"}")?;
    assert!(misses >= (conns * per_conn) as f64, "{misses} misses: the reviews were meant to be distinct");
    let grown = rss_kib(webhook.pid())?.saturating_sub(baseline);
    // The cache's size plus a small constant for what else the process allocated meanwhile.
    let allowed = (mib + 8) * 1024;
    assert!(grown <= allowed, "RSS grew by {grown} KiB over {baseline} KiB, allowed {allowed} KiB");
    Ok(())
}

/// Regression: `POST /inject/cluster/%00/net/%ff` was a 400 "Invalid URL", not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_bytes_that_are_not_text_are_a_counted_404() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let webhook = start(&ca, dir.path(), &[])?;
    let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;
    match conn.post("/inject/cluster/%00/net/%ff", support::fixture_review()?).await {
        Sent::Answered(404, _, body) => {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("\"%00\" decodes to a control character"), "{text}");
        }
        other => bail!("unexpected: {other:?}"),
    }
    assert_eq!(webhook.metric("mesh_webhook_requests_total{outcome=\"error\",reason=\"bad_path\"}")?, 1.0);
    Ok(())
}
