//! `kubectl mesh inject -f`: the real binary, run with assert_cmd on the manifests in
//! `examples/inject/`, checking output order, injection, flags, errors and exit codes.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> String {
    repo().join("examples/inject").join(name).display().to_string()
}

/// The `kubectl-mesh` binary of this build. Cargo builds a dependency's library but not its binary
/// for this package's tests, so it is built here (a no-op when it is up to date).
fn plugin() -> assert_cmd::Command {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target profile directory").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
        let mut build = Command::new(cargo);
        // `--workspace --bins`, as tests/run builds them (`-p` would rebuild dependencies with other features).
        build.args(["build", "-q", "--workspace", "--bins"]).current_dir(repo());
        if profile == "release" {
            build.arg("--release");
        }
        if let Some(target) = dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        let status = build.status().expect("running cargo build -p kubectl-mesh");
        assert!(status.success(), "cargo build -p kubectl-mesh failed");
        dir.join("kubectl-mesh")
    });
    let mut cmd = assert_cmd::Command::new(path);
    cmd.arg("inject");
    cmd
}

fn docs(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    let docs: Vec<Value> = mesh_core::documents::parse_documents(&text).expect("output is YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn injects_a_deployment_and_passes_the_service_through() {
    let out = plugin().args(["-f", &example("deployment.yaml")]).assert().success().get_output().stdout.clone();
    let docs = docs(&out);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "Service");
    assert_eq!(docs[0]["spec"]["ports"][0]["port"], 9080);
    let template = &docs[1]["spec"]["template"];
    assert_eq!(names(&template["spec"]["initContainers"]), ["istio-init", "istio-proxy"]);
    assert_eq!(names(&template["spec"]["containers"]), ["reviews"]);
    let proxy = &template["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["image"], "docker.io/istio/proxyv2:1.28.0");
    assert_eq!(proxy["resources"]["requests"]["cpu"], "200m");
    assert_eq!(env(proxy, "ISTIO_META_OWNER"), Some("kubernetes://apis/apps/v1/namespaces/shop/deployments/reviews"));
    assert_eq!(env(proxy, "ISTIO_META_WORKLOAD_NAME"), Some("reviews"));
    let init = &template["spec"]["initContainers"][0];
    assert!(init["image"].as_str().unwrap().starts_with("ghcr.io/mesh-project/mesh-init:"));
    let args: Vec<&str> = init["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let o = args.iter().position(|a| *a == "-o").expect("-o in init args");
    assert_eq!(args[o + 1], "5432");
    let app = &template["spec"]["containers"][0];
    assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/app-health/reviews/readyz");
    assert_eq!(app["livenessProbe"]["httpGet"]["port"], 15020);
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["service.istio.io/canonical-revision"], "v2");
    assert!(template["metadata"].get("namespace").is_none());
}

#[test]
fn every_kind_in_order_and_opt_out_untouched() {
    let out = plugin().args(["-f", &example("workloads.yaml")]).assert().success().get_output().stdout.clone();
    let docs = docs(&out);
    assert_eq!(docs.iter().map(|d| d["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["List", "CronJob", "Pod"]);
    let items = docs[0]["items"].as_array().unwrap();
    assert_eq!(items[0]["kind"], "DaemonSet");
    let ds_proxy = &items[0]["spec"]["template"]["spec"]["initContainers"][1];
    assert_eq!(
        env(ds_proxy, "ISTIO_META_OWNER"),
        Some("kubernetes://apis/apps/v1/namespaces/default/daemonsets/log-agent")
    );
    assert_eq!(items[1]["data"]["level"], "info");
    let cron = &docs[1]["spec"]["jobTemplate"]["spec"]["template"];
    let cron_proxy = &cron["spec"]["initContainers"][1];
    assert_eq!(
        env(cron_proxy, "ISTIO_META_OWNER"),
        Some("kubernetes://apis/batch/v1/namespaces/default/cronjobs/report")
    );
    assert_eq!(names(&docs[2]["spec"]["containers"]), ["shell"]);
    assert!(docs[2]["spec"].get("initContainers").is_none());
}

#[test]
fn stdin_json_and_regular_container_sidecar() {
    let input = std::fs::read(example("deployment.yaml")).unwrap();
    let out = plugin()
        .args(["-f", "-", "-o", "json", "--native-sidecars", "disabled"])
        .write_stdin(input)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list: Value = serde_json::from_slice(&out).expect("output is JSON");
    assert_eq!(list["kind"], "List");
    let spec = &list["items"][1]["spec"]["template"]["spec"];
    assert_eq!(names(&spec["containers"]), ["reviews", "istio-proxy"]);
    assert_eq!(names(&spec["initContainers"]), ["istio-init"]);
}

#[test]
fn config_file_sets_images_and_network() {
    let out = plugin()
        .args(["-f", &example("deployment.yaml"), "--config", &example("config.yaml")])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let template = &docs(&out)[1]["spec"]["template"];
    let proxy = &template["spec"]["initContainers"][1];
    assert_eq!(proxy["image"], "registry.example.com/istio/proxyv2:1.28.0");
    assert_eq!(env(proxy, "ISTIO_META_NETWORK"), Some("net1"));
    assert_eq!(env(proxy, "ISTIO_META_MESH_ID"), Some("mesh1"));
    assert_eq!(template["spec"]["imagePullSecrets"][0]["name"], "registry-credentials");
    assert_eq!(template["metadata"]["labels"]["topology.istio.io/network"], "net1");
}

#[test]
fn injecting_twice_equals_injecting_once() {
    let once = plugin().args(["-f", &example("deployment.yaml")]).assert().success().get_output().stdout.clone();
    let twice = plugin().args(["-f", "-"]).write_stdin(once.clone()).assert().success().get_output().stdout.clone();
    assert_eq!(docs(&once), docs(&twice));
}

#[test]
fn bad_input_fails_with_exit_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "kind: ConfigMap\nmetadata: {name: a}\n---\nkind: Pod\nmetadata:\n  name: [\nspec: {}\n")
        .unwrap();
    let out = plugin().args(["-f", bad_yaml.to_str().unwrap()]).assert().code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("document 2 (line "), "{err}");

    let bad_annotation = dir.path().join("pod.yaml");
    std::fs::write(
        &bad_annotation,
        "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    traffic.sidecar.istio.io/excludeInboundPorts: \"80,abc\"\nspec:\n  containers: [{name: c, image: x}]\n",
    )
    .unwrap();
    let out = plugin().args(["-f", bad_annotation.to_str().unwrap()]).assert().code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("traffic.sidecar.istio.io/excludeInboundPorts") && err.contains("80,abc"), "{err}");

    let bad_config = dir.path().join("config.yaml");
    std::fs::write(&bad_config, "proxy:\n  imag: x\n").unwrap();
    let out = plugin()
        .args(["-f", &example("deployment.yaml"), "--config", bad_config.to_str().unwrap()])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("imag"), "{err}");

    let out = plugin().args(["-f", "/nonexistent/manifest.yaml"]).assert().code(1).get_output().stderr.clone();
    assert!(String::from_utf8_lossy(&out).contains("/nonexistent/manifest.yaml"));

    // A bad flag value is a usage error (64, EX_USAGE; 2 means "found a problem").
    plugin().args(["-f", "-", "--native-sidecars", "sometimes"]).assert().code(64);
}

/// `kubectl mesh inject -f` renders Istio's other stock templates as the webhook does: every case of
/// cases-templates.yaml, injected from its input file, matches Istio's golden output.
#[test]
fn stock_templates_match_istio_through_the_cli() -> anyhow::Result<()> {
    use mesh_tests::inject_cases;
    let dir = inject_cases::cases_dir()?;
    let index: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join("cases-templates.yaml"))?)?;
    let cases = index["cases"].as_array().ok_or_else(|| anyhow::anyhow!("cases-templates.yaml without cases"))?;
    assert!(!cases.is_empty(), "cases-templates.yaml lists no case");
    let tmp = tempfile::tempdir()?;
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default();
        let input = dir.join(case["input"].as_str().unwrap_or_default());
        let golden = std::fs::read_to_string(dir.join(case["golden"].as_str().unwrap_or_default()))?;
        let config = tmp.path().join(format!("{name}.config.yaml"));
        std::fs::write(&config, inject_cases::config_yaml(case.get("settings"))?)?;
        let out = plugin()
            .args(["-f", &input.display().to_string(), "--config", &config.display().to_string()])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let got: Vec<Value> = docs(&out).iter().filter_map(inject_cases::to_pod).collect();
        let want: Vec<Value> =
            inject_cases::flatten(inject_cases::yaml_docs(&golden)?).iter().filter_map(inject_cases::to_pod).collect();
        assert_eq!(got.len(), want.len(), "{name}: pod count");
        for (got, want) in got.iter().zip(&want) {
            let diffs = inject_cases::compare(got, want)?;
            assert!(diffs.is_empty(), "{name}: {} differences:\n  {}", diffs.len(), diffs.join("\n  "));
        }
    }
    Ok(())
}
