//! Istio's own configuration as input (`--istio-config DIR`): the ConfigMaps of Istio's default
//! profile (`shared/conformance/istio-inject/reference/istio-configmaps-default.yaml`, rendered by
//! Istio's chart) written out as a ConfigMap volume would, mapped to an InjectConfig, and every shared
//! case injected through it, through `kubectl mesh inject --istio-config` and through the webhook.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_core::inject::istio_config::{FILES, from_istio, read_dir};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector, MeshConfig};
use mesh_tests::inject_cases::{self, CASE_FILES, Case, Expect, cases_dir, load_cases};
use mesh_tests::support::{self, Conn, Sent, TestCa, Webhook, kubelet_update};
use serde_json::{Map, Value, json};

/// The discovery address of the default profile's `defaultConfig`.
const DISCOVERY_ADDRESS: &str = "istiod.istio-system.svc:15012";

/// The keys of the default profile's two ConfigMaps: `mesh`, `config`, `values`.
fn default_profile() -> anyhow::Result<BTreeMap<String, String>> {
    let path = cases_dir()?.join("reference/istio-configmaps-default.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = BTreeMap::new();
    for doc in inject_cases::yaml_docs(&text)? {
        let keys: &[&str] = match doc.pointer("/metadata/name").and_then(Value::as_str) {
            Some("istio") => &["mesh"],
            Some("istio-sidecar-injector") => &["config", "values"],
            _ => continue,
        };
        for key in keys {
            let value = doc["data"][key].as_str().with_context(|| format!("no data.{key}"))?;
            out.insert((*key).to_owned(), value.to_owned());
        }
    }
    for file in FILES {
        if !out.contains_key(file) {
            bail!("{} has no key {file}", path.display());
        }
    }
    Ok(out)
}

fn write_files(dir: &Path, files: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn map(files: &BTreeMap<String, String>) -> anyhow::Result<InjectConfig> {
    Ok(from_istio(&files["mesh"], &files["config"], &files["values"])?)
}

/// The cases' `settings` by case name (the case loader keeps only the resulting InjectConfig).
fn case_settings() -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for file in CASE_FILES {
        let cases: Value = serde_saphyr::from_str(&std::fs::read_to_string(cases_dir()?.join(file))?)?;
        for case in cases["cases"].as_array().into_iter().flatten() {
            if let (Some(name), Some(settings)) = (case["name"].as_str(), case.get("settings")) {
                out.insert(name.to_owned(), settings.clone());
            }
        }
    }
    Ok(out)
}

fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut slot = root;
    for part in path.split('.') {
        if !slot.is_object() {
            *slot = json!({});
        }
        slot = &mut slot[part];
    }
    *slot = value;
}

/// The default profile with a case's settings applied where Istio keeps them: `meshConfig.*` in
/// `mesh`, the injector's selectors and annotations in `config`, the other Helm values in `values`.
fn case_files(base: &BTreeMap<String, String>, settings: Option<&Value>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut mesh: Value = serde_saphyr::from_str(&base["mesh"])?;
    let mut config: Value = serde_saphyr::from_str(&base["config"])?;
    let mut values: Value = serde_json::from_str(&base["values"])?;
    if let Some(settings) = settings {
        if let Some(mode) = settings.get("nativeSidecars").and_then(Value::as_str) {
            set_path(&mut values, "pilot.env.ENABLE_NATIVE_SIDECARS", json!(mode == "enabled"));
        }
        for (key, value) in settings.get("values").and_then(Value::as_object).into_iter().flatten() {
            match key.split_once('.') {
                Some(("meshConfig", rest)) => set_path(&mut mesh, rest, value.clone()),
                Some((
                    "sidecarInjectorWebhook",
                    rest @ ("neverInjectSelector" | "alwaysInjectSelector" | "injectedAnnotations"),
                )) => set_path(&mut config, rest, value.clone()),
                _ => set_path(&mut values, key, value.clone()),
            }
        }
    }
    // JSON is YAML: the mesh and config files may be written as JSON.
    Ok(BTreeMap::from([
        ("mesh".to_owned(), mesh.to_string()),
        ("config".to_owned(), config.to_string()),
        ("values".to_owned(), values.to_string()),
    ]))
}

/// The InjectConfig a case's harness gives, plus what the default profile's mesh config says.
fn equivalent(case: &Case) -> anyhow::Result<InjectConfig> {
    let mut cfg = InjectConfig::from_yaml(&case.config_yaml)?;
    let Value::Object(default_config) = json!({"discoveryAddress": DISCOVERY_ADDRESS}) else { bail!("not a map") };
    cfg.mesh_config = MeshConfig {
        default_config,
        trust_domain: "cluster.local".into(),
        enable_prometheus_merge: Some(true),
        ..MeshConfig::default()
    };
    Ok(cfg)
}

fn request() -> InjectRequest<'static> {
    InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

fn outcome(injector: &Injector, pod: &Value) -> anyhow::Result<Result<Value, String>> {
    let mut out = pod.clone();
    match injector.inject(pod, &request()) {
        Decision::Patch(patch) => json_patch::patch(&mut out, &patch)?,
        Decision::Skip(_) => {}
        Decision::Deny(message) => return Ok(Err(message)),
    }
    Ok(Ok(out))
}

fn proxy_env<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    let spec = &pod["spec"];
    let proxy = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[l].as_array().into_iter().flatten())
        .find(|c| c["name"] == "istio-proxy")?;
    proxy["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

/// The pod with `discoveryAddress` taken out of PROXY_CONFIG (the golden files have none).
fn without_discovery_address(pod: &Value) -> anyhow::Result<Value> {
    let mut pod = pod.clone();
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["name"] == "PROXY_CONFIG" {
                    let mut pc: Map<String, Value> = serde_json::from_str(e["value"].as_str().unwrap_or("{}"))?;
                    if pc.remove("discoveryAddress") != Some(json!(DISCOVERY_ADDRESS)) {
                        bail!("PROXY_CONFIG without the mesh's discoveryAddress: {}", e["value"]);
                    }
                    e["value"] = json!(format!("{}\n", Value::Object(pc)));
                }
            }
        }
    }
    Ok(pod)
}

#[test]
fn default_profile_maps_and_its_discovery_address_reaches_proxy_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_files(dir.path(), &default_profile()?)?;
    let cfg = read_dir(dir.path())?;
    assert_eq!(cfg.proxy.image, inject_cases::TEST_IMAGE, "hub/proxyv2:tag of the profile's values");
    assert_eq!(cfg.proxy_init.image, inject_cases::TEST_IMAGE);
    let cases = load_cases()?;
    let hello = cases.iter().find(|c| c.name == "hello.yaml").context("no hello.yaml case")?;
    let out = outcome(&Injector::new(cfg), &hello.pods[0])?.map_err(anyhow::Error::msg)?;
    let pc: Value = serde_json::from_str(proxy_env(&out, "PROXY_CONFIG").context("no PROXY_CONFIG")?)?;
    assert_eq!(pc, json!({"discoveryAddress": DISCOVERY_ADDRESS}));
    Ok(())
}

#[test]
fn gateway_case_gets_the_gateway_template() -> anyhow::Result<()> {
    let injector = Injector::new(map(&default_profile()?)?);
    let cases = load_cases()?;
    let gateway = cases.iter().find(|c| c.name == "gateway.yaml").context("no gateway.yaml case")?;
    let Expect::Pods(golden) = &gateway.expect else { bail!("gateway.yaml expects pods") };
    for (pod, want) in gateway.pods.iter().zip(golden) {
        let out = outcome(&injector, pod)?.map_err(anyhow::Error::msg)?;
        let proxy = &out["spec"]["containers"][0];
        assert_eq!(proxy["name"], "istio-proxy");
        assert_eq!(proxy["args"][1], "router", "{}", proxy["args"]);
        assert!(out["spec"]["initContainers"].as_array().is_none_or(Vec::is_empty), "no init container");
        let diffs = inject_cases::compare(&without_discovery_address(&out)?, want)?;
        assert!(diffs.is_empty(), "{} differences:\n  {}", diffs.len(), diffs.join("\n  "));
    }
    Ok(())
}

/// Every shared case, its settings put where Istio keeps them: injecting through the mapped Istio
/// configuration equals injecting through the equivalent InjectConfig, and Istio's golden output.
#[test]
fn shared_cases_through_istio_config_equal_the_equivalent_inject_config() -> anyhow::Result<()> {
    let base = default_profile()?;
    let settings = case_settings()?;
    let cases = load_cases()?;
    let mut failures = Vec::new();
    for case in &cases {
        let result = (|| -> anyhow::Result<()> {
            let from_istio = Injector::new(map(&case_files(&base, settings.get(&case.name))?)?);
            let equivalent = Injector::new(equivalent(case)?);
            for (i, pod) in case.pods.iter().enumerate() {
                let got = outcome(&from_istio, pod)?;
                let want = outcome(&equivalent, pod)?;
                if got != want {
                    let diffs = match (&got, &want) {
                        (Ok(g), Ok(w)) => inject_cases::differences(g, w).join("\n  "),
                        _ => format!("{got:?} vs {want:?}"),
                    };
                    bail!("pod {i}: --istio-config and InjectConfig differ:\n  {diffs}");
                }
                match (&case.expect, got) {
                    (Expect::Pods(golden), Ok(out)) => {
                        let diffs = inject_cases::compare(&without_discovery_address(&out)?, &golden[i])?;
                        if !diffs.is_empty() {
                            bail!("pod {i}: {} differences from the golden:\n  {}", diffs.len(), diffs.join("\n  "));
                        }
                    }
                    (Expect::DenyContaining(text), Err(message))
                        if message.to_lowercase().contains(&text.to_lowercase()) => {}
                    (expect, got) => bail!("pod {i}: want {expect:?}, got {got:?}"),
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("{}: {e:#}", case.name));
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}\n");
    }
    println!("inject through --istio-config: {}/{}", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{} of {} cases differ", failures.len(), cases.len());
    Ok(())
}

#[test]
fn a_changed_stock_template_is_refused_naming_it() -> anyhow::Result<()> {
    let mut files = default_profile()?;
    let mut config: Value = serde_saphyr::from_str(&files["config"])?;
    let sidecar = config["templates"]["sidecar"].as_str().context("no sidecar template")?.replace("15090", "15091");
    config["templates"]["sidecar"] = json!(sidecar);
    files.insert("config".into(), config.to_string());
    let err = map(&files).expect_err("a changed template is refused").to_string();
    assert!(err.contains("templates.sidecar") && err.contains("stock"), "{err}");
    Ok(())
}

fn plugin() -> anyhow::Result<assert_cmd::Command> {
    let path = support::webhook_binary()?.with_file_name("kubectl-mesh");
    let mut cmd = assert_cmd::Command::new(path);
    cmd.arg("inject");
    Ok(cmd)
}

#[test]
fn kubectl_mesh_inject_with_istio_config_equals_the_equivalent_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let istio = dir.path().join("istio");
    std::fs::create_dir(&istio)?;
    write_files(&istio, &default_profile()?)?;
    let cases = load_cases()?;
    let hello = cases.iter().find(|c| c.name == "hello.yaml").context("no hello.yaml case")?;
    let equivalent_path = dir.path().join("config.json");
    std::fs::write(&equivalent_path, serde_json::to_string(&equivalent(hello)?)?)?;
    let manifests = inject_cases::cases_dir()?.join("input/hello.yaml").display().to_string();
    let run = |flag: &str, path: &Path| -> anyhow::Result<Vec<u8>> {
        let out = plugin()?.args([flag, &path.display().to_string(), "-f", &manifests]).assert().success();
        Ok(out.get_output().stdout.clone())
    };
    let through_istio = run("--istio-config", &istio)?;
    assert_eq!(String::from_utf8(through_istio.clone())?, String::from_utf8(run("--config", &equivalent_path)?)?);
    assert!(String::from_utf8(through_istio)?.contains(DISCOVERY_ADDRESS));

    std::fs::write(istio.join("config"), "templates:\n  mine: |\n    spec: {}\n")?;
    let out = plugin()?.args(["--istio-config", &istio.display().to_string(), "-f", &manifests]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("--istio-config") && stderr.contains("templates.mine"), "{stderr}");
    plugin()?.args(["--istio-config", "/a", "--config", "/b", "-f", &manifests]).assert().failure();
    Ok(())
}

const READY: Duration = Duration::from_secs(60);

/// Sends the fixture review and returns the patched pod.
async fn inject_fixture(conn: &mut Conn) -> anyhow::Result<Value> {
    let review: Value = serde_json::from_slice(&support::fixture_review()?)?;
    let uid = review["request"]["uid"].as_str().unwrap_or_default();
    let body = match conn.post("/inject", support::fixture_review()?).await {
        Sent::Answered(200, _, body) => body,
        other => bail!("unexpected: {other:?}"),
    };
    support::apply_response(&review["request"]["object"], &body, uid)?.map_err(anyhow::Error::msg)
}

/// The webhook serves the mapped Istio configuration, reloads it when the ConfigMap volume changes,
/// and keeps the previous one when the new one has a setting it cannot honour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_serves_and_reloads_istio_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let (cert, key) = ca.serving("webhook");
    std::fs::write(dir.path().join("tls.crt"), &cert)?;
    std::fs::write(dir.path().join("tls.key"), &key)?;
    let istio = dir.path().join("istio");
    std::fs::create_dir(&istio)?;
    let profile = default_profile()?;
    let as_list = |files: &BTreeMap<String, String>| -> Vec<(String, String)> {
        files.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let update = |version: u32, files: &BTreeMap<String, String>| -> anyhow::Result<()> {
        let list = as_list(files);
        let refs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        kubelet_update(&istio, version, &refs)
    };
    update(1, &profile)?;
    let p = |name: &str| dir.path().join(name).display().to_string();
    let webhook = Webhook::start(
        &["--tls-cert", &p("tls.crt"), "--tls-key", &p("tls.key"), "--istio-config", &istio.display().to_string()],
        &[],
    )?;
    webhook.wait_ready(READY)?;
    let mut conn = Conn::open(webhook.listen, ca.client_config()).await?;
    let first = inject_fixture(&mut conn).await?;
    assert!(proxy_env(&first, "PROXY_CONFIG").is_some_and(|v| v.contains(DISCOVERY_ADDRESS)), "{first}");

    // A changed mesh default reaches the next pod.
    let mut changed = profile.clone();
    changed.insert("mesh".into(), "defaultConfig:\n  discoveryAddress: istiod-canary.istio-system.svc:15012\n".into());
    update(2, &changed)?;
    webhook.wait_metric("mesh_webhook_config_reloads_total{result=\"ok\"}", 2.0, READY)?;
    let second = inject_fixture(&mut conn).await?;
    assert!(proxy_env(&second, "PROXY_CONFIG").is_some_and(|v| v.contains("istiod-canary")), "{second}");

    // A custom template is refused, naming it; the previous config keeps serving.
    let mut bad = changed.clone();
    bad.insert("config".into(), "templates:\n  mine: |\n    spec: {}\n".into());
    update(3, &bad)?;
    webhook.wait_metric("mesh_webhook_config_reloads_total{result=\"failed\"}", 1.0, READY)?;
    let rejected = webhook.wait_logs("config rejected; keeping the previous one", 1, READY)?.remove(0);
    assert!(rejected["error"].as_str().unwrap_or("").contains("templates.mine"), "{rejected}");
    let third = inject_fixture(&mut conn).await?;
    assert!(proxy_env(&third, "PROXY_CONFIG").is_some_and(|v| v.contains("istiod-canary")), "{third}");
    Ok(())
}

/// The mesh-wide ProxyConfig (`meshConfig.defaultConfig`), pinned: it drives the template as the
/// annotation does (TPROXY capture, the proxy first with hold, proxyMetadata as env) and every key
/// reaches `PROXY_CONFIG`; a pod's `proxy.istio.io/config` is merged over it (its own
/// interceptionMode and concurrency win, the rest of the mesh default stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_default_proxy_config_is_pinned_by_goldens() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "nativeSidecars: disabled\nmeshConfig:\n  defaultConfig:\n    interceptionMode: TPROXY\n    \
         holdApplicationUntilProxyStarts: true\n    concurrency: 2\n    discoveryAddress: istiod.mesh-system.svc:15012\n    \
         proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}\n",
    )?;
    let pod = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": annotations},
               "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}]}})
    };
    let overlay = r#"{"interceptionMode": "REDIRECT", "concurrency": 4}"#;
    for (name, annotations) in [
        ("mesh-default-config", json!({})),
        ("mesh-default-config-annotation", json!({"proxy.istio.io/config": overlay})),
    ] {
        let input = dir.path().join(format!("{name}.json"));
        std::fs::write(&input, pod(annotations).to_string())?;
        let args = ["kubectl-mesh", "inject", "-f", input.to_str().unwrap_or_default(), "--config"]
            .into_iter()
            .map(str::to_owned)
            .chain([config.to_string_lossy().into_owned()])
            .collect();
        let (code, out) = support::run_plugin(args).await;
        assert_eq!(code?, 0, "{out}");
        let golden = mesh_test_data::repo_root().join(format!("tests/golden/inject/{name}.yaml"));
        mesh_test_data::check_golden(&golden, &out)?;
        // What the goldens show, asserted.
        let injected: Value = serde_saphyr::from_str(&out)?;
        let proxy = &injected["spec"]["containers"][0];
        assert_eq!(proxy["name"], "istio-proxy", "hold puts the proxy first: {out}");
        let env = |key: &str| {
            proxy["env"].as_array().into_iter().flatten().find(|e| e["name"] == key).map(|e| e["value"].clone())
        };
        let proxy_config: Value = serde_json::from_str(
            env("PROXY_CONFIG").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default().trim(),
        )?;
        assert_eq!(proxy_config["discoveryAddress"], "istiod.mesh-system.svc:15012", "{out}");
        assert_eq!(proxy_config["holdApplicationUntilProxyStarts"], true);
        assert_eq!(env("ISTIO_META_DNS_CAPTURE"), Some(json!("true")), "proxyMetadata becomes env: {out}");
        let init_args = injected["spec"]["initContainers"][0]["args"].to_string();
        if name == "mesh-default-config" {
            assert_eq!(proxy_config["interceptionMode"], "TPROXY");
            assert_eq!(proxy_config["concurrency"], 2);
            assert!(init_args.contains("TPROXY"), "TPROXY capture: {init_args}");
        } else {
            assert_eq!(proxy_config["interceptionMode"], "REDIRECT");
            assert_eq!(proxy_config["concurrency"], 4);
            assert!(init_args.contains("REDIRECT"), "the annotation's capture mode wins: {init_args}");
        }
    }
    Ok(())
}
