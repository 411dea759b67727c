//! mesh-webhook `--self-signed` against the test API server: the Secret is created and shared by
//! replicas, `caBundle` is patched into the selected MutatingWebhookConfigurations and put back after
//! tampering, the served certificate verifies for the Service's DNS name, the Secret is owned by the
//! `--secret-owner-configmap` ConfigMap (a Secret left by an earlier owner is started over); and native sidecars in
//! auto mode follow the nodes' kubelet versions.

use mesh_tests::support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use mesh_tests::apiserver::TestApiServer;
use serde_json::{Value, json};
use support::{Conn, Sent, Webhook, client_config_for, wait_until};

const NS: &str = "istio-system";
const SECRET: &str = "mesh-webhook-tls";
const SELECTOR: &str = "app.kubernetes.io/instance=mesh";
const SERVICE_DNS: &str = "mesh-webhook.istio-system.svc";
const READY: Duration = Duration::from_secs(60);
const OWNER: &str = "mesh-webhook";

fn webhook_configuration(name: &str, labelled: bool, ca_bundle: Option<&str>) -> Value {
    let labels = if labelled { json!({"app.kubernetes.io/instance": "mesh"}) } else { json!({"app": "other"}) };
    let client_config = |path: &str| {
        let mut c = json!({"service": {"name": "mesh-webhook", "namespace": NS, "path": path, "port": 443}});
        if let Some(ca) = ca_bundle {
            c["caBundle"] = json!(ca);
        }
        c
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": labels},
        "webhooks": [
            {"name": "namespace.sidecar-injector.mesh.io", "clientConfig": client_config("/inject"),
             "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]},
            {"name": "object.sidecar-injector.mesh.io", "clientConfig": client_config("/inject"),
             "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}
        ]
    })
}

fn node(name: &str, kubelet: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"nodeInfo": {"kubeletVersion": kubelet}}})
}

fn secret_field(api: &TestApiServer, key: &str) -> anyhow::Result<String> {
    let secret = api.get("v1", "Secret", NS, SECRET).context("Secret not created")?;
    let encoded = secret["data"][key].as_str().with_context(|| format!("Secret has no {key}: {secret}"))?;
    Ok(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded)?)?)
}

fn configmap(api: &TestApiServer) -> anyhow::Result<String> {
    let cm = api.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": OWNER, "namespace": NS}}))?;
    Ok(cm["metadata"]["uid"].as_str().context("ConfigMap without uid")?.to_string())
}

fn owner_references(api: &TestApiServer) -> Value {
    api.get("v1", "Secret", NS, SECRET).map(|s| s["metadata"]["ownerReferences"].clone()).unwrap_or_default()
}

fn owned_by(uid: &str) -> Value {
    json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": OWNER, "uid": uid}])
}

fn ca_bundles(api: &TestApiServer, name: &str) -> Vec<Value> {
    let config = api.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", name);
    config
        .and_then(|c| c["webhooks"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|w| w["clientConfig"]["caBundle"].clone())
        .collect()
}

/// Where istio-proxy ends up in the patched fixture pod: `containers` or `initContainers`.
async fn proxy_list(conn: &mut Conn) -> anyhow::Result<&'static str> {
    let review: Value = serde_json::from_slice(&support::fixture_review()?)?;
    let uid = review["request"]["uid"].as_str().unwrap_or_default().to_string();
    let body = match conn.post("/inject", support::fixture_review()?).await {
        Sent::Answered(200, _, body) => body,
        other => bail!("unexpected answer: {other:?}"),
    };
    let patched = support::apply_response(&review["request"]["object"], &body, &uid)?.map_err(anyhow::Error::msg)?;
    for list in ["initContainers", "containers"] {
        if patched["spec"][list].as_array().into_iter().flatten().any(|c| c["name"] == "istio-proxy") {
            return Ok(if list == "containers" { "containers" } else { "initContainers" });
        }
    }
    bail!("no istio-proxy in {patched}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_secret_ca_bundle_and_native_sidecar_auto_mode() -> anyhow::Result<()> {
    let api = TestApiServer::start()?;
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))?;
    api.put(webhook_configuration("mesh-sidecar-injector", true, None))?;
    api.put(webhook_configuration("someone-else", false, Some("b3RoZXI=")))?;
    api.put(node("node-a", "v1.34.1"))?;
    api.put(node("node-b", "v1.32.4"))?;
    let owner_uid = configmap(&api)?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let kubeconfig = kubeconfig.display().to_string();
    let args = ["--self-signed", "--webhook-config-selector", SELECTOR, "--secret-owner-configmap", OWNER];
    let env = [("KUBECONFIG", kubeconfig.as_str()), ("POD_NAMESPACE", NS)];

    let webhook = Webhook::start(&args, &env)?;
    webhook.wait_ready(READY)?;

    // The Secret holds a CA and a serving certificate for the Service.
    let ca_pem = secret_field(&api, "ca.crt")?;
    for key in ["ca.key", "tls.crt", "tls.key"] {
        assert!(secret_field(&api, key)?.contains("-----BEGIN"), "{key} is not PEM");
    }
    let secret = api.get("v1", "Secret", NS, SECRET).context("Secret")?;
    assert_eq!(secret["type"], "kubernetes.io/tls");
    // Owned by the ConfigMap: the garbage collector deletes the Secret with it.
    assert_eq!(secret["metadata"]["ownerReferences"], owned_by(&owner_uid));

    // caBundle patched into every webhook of the selected configuration, and only there.
    let ca_b64 = json!(base64::engine::general_purpose::STANDARD.encode(&ca_pem));
    wait_until("caBundle patched", READY, || ca_bundles(&api, "mesh-sidecar-injector") == vec![ca_b64.clone(); 2])?;
    assert_eq!(ca_bundles(&api, "someone-else"), vec![json!("b3RoZXI="); 2], "unselected configuration touched");

    // The served certificate verifies against the CA for <svc>.<ns>.svc.
    let config = client_config_for(&ca_pem);
    let mut conn = Conn::open_as(webhook.listen, config.clone(), SERVICE_DNS).await?;
    Conn::open_as(webhook.listen, config.clone(), "mesh-webhook.istio-system").await?;
    Conn::open_as(webhook.listen, config.clone(), "mesh-webhook").await?;
    assert!(Conn::open_as(webhook.listen, config.clone(), "other.istio-system.svc").await.is_err());

    // Auto mode: one kubelet is 1.32, so istio-proxy is a regular container.
    assert_eq!(proxy_list(&mut conn).await?, "containers");

    // Someone overwrites caBundle: it is put back.
    let mut tampered = webhook_configuration("mesh-sidecar-injector", true, Some("dGFtcGVyZWQ="));
    tampered["metadata"]["resourceVersion"] = json!(null);
    api.put(tampered)?;
    wait_until("caBundle restored", READY, || ca_bundles(&api, "mesh-sidecar-injector") == vec![ca_b64.clone(); 2])?;

    // The last old kubelet is upgraded: native sidecars (istio-proxy in initContainers).
    api.put(node("node-b", "v1.33.0"))?;
    let deadline = Instant::now() + READY;
    while proxy_list(&mut conn).await? != "initContainers" {
        if Instant::now() > deadline {
            bail!("native sidecars not enabled after every kubelet reached 1.33");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A Secret without the ownerReference gets it, and keeps its CA.
    let mut unowned = api.get("v1", "Secret", NS, SECRET).context("Secret")?;
    unowned["metadata"]["resourceVersion"] = json!(null);
    unowned["metadata"].as_object_mut().context("metadata")?.remove("ownerReferences");
    api.put(unowned)?;
    assert_eq!(owner_references(&api), Value::Null);

    // A second replica shares the CA from the Secret instead of making its own.
    let replica = Webhook::start(&args, &env)?;
    replica.wait_ready(READY)?;
    assert_eq!(secret_field(&api, "ca.crt")?, ca_pem, "the second replica replaced the CA");
    Conn::open_as(replica.listen, config, SERVICE_DNS).await?;
    assert_eq!(owner_references(&api), owned_by(&owner_uid), "ownerReference not added");

    assert_eq!(webhook.metric("mesh_webhook_cert_reloads_total{result=\"ok\"}")?, 1.0);

    // Reinstalled: a new ConfigMap (new uid) while the old Secret is still there (no garbage
    // collection yet). The old CA is not kept: a new one, owned by the new ConfigMap.
    api.remove("v1", "ConfigMap", NS, OWNER).context("ConfigMap")?;
    let new_uid = configmap(&api)?;
    assert_ne!(new_uid, owner_uid);
    let reinstalled = Webhook::start(&args, &env)?;
    reinstalled.wait_ready(READY)?;
    assert_eq!(owner_references(&api), owned_by(&new_uid));
    let new_ca = secret_field(&api, "ca.crt")?;
    assert_ne!(new_ca, ca_pem, "the reinstalled webhook kept the earlier installation's CA");
    Conn::open_as(reinstalled.listen, client_config_for(&new_ca), SERVICE_DNS).await?;
    Ok(())
}

/// `--self-signed` without API access fails with a message; bad flag combinations exit 64.
#[test]
fn self_signed_needs_the_api_and_flags_are_checked() -> anyhow::Result<()> {
    let bin = support::webhook_binary()?;
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .output()
    };
    let out = run(&[])?;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"), "{out:?}");
    let out = run(&["--self-signed"])?;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_NAMESPACE"), "{out:?}");
    let out = run(&["--tls-cert", "a.pem"])?;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{out:?}");
    let out = run(&["--drain-timeout", "soon"])?;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"), "{out:?}");
    let out = run(&["--self-signed", "--namespace", NS, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Kubernetes API"), "{out:?}");
    Ok(())
}
