//! The Helm chart `charts/mesh`, rendered by the real `helm template`:
//! - goldens for the value sets in `charts/mesh/ci/` (and the defaults), regenerated with `UPDATE_GOLDEN=1`;
//! - every rendered object parses as its Kubernetes type (k8s-openapi, or a strict model of the
//!   cert-manager and Prometheus Operator kinds) with no unknown fields;
//! - the ConfigMap is a strict `mesh_core::inject::InjectConfig` whose defaults are the code's;
//! - the webhook configuration's selectors, evaluated like the API server does, select exactly what
//!   Istio's own selectors select (rendered from Istio's chart template in the shared data);
//! - bad values fail with a message naming them; the README lists every value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use mesh_core::inject::InjectConfig;
use mesh_tests::Tool;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The namespace every value set is rendered into.
const NAMESPACE: &str = "mesh-system";
/// The Kubernetes version `helm template` assumes (the chart needs >= 1.28).
const KUBE_VERSION: &str = "1.33.0";

/// A named way to render the chart: the golden file's name, the release name and a values file.
struct ValueSet {
    name: &'static str,
    release: &'static str,
    values_file: Option<&'static str>,
}

/// The value sets with goldens. `tests/run.d/helm.sh` lints the same files.
const VALUE_SETS: [ValueSet; 7] = [
    ValueSet { name: "default", release: "mesh", values_file: None },
    ValueSet { name: "revision", release: "mesh-canary", values_file: Some("ci/revision-values.yaml") },
    ValueSet { name: "cert-manager", release: "mesh", values_file: Some("ci/cert-manager-values.yaml") },
    ValueSet { name: "existing-secret", release: "mesh", values_file: Some("ci/existing-secret-values.yaml") },
    ValueSet { name: "single-replica", release: "mesh", values_file: Some("ci/single-replica-values.yaml") },
    ValueSet { name: "monitoring", release: "mesh", values_file: Some("ci/monitoring-values.yaml") },
    ValueSet { name: "istio-config", release: "mesh", values_file: Some("ci/istio-config-values.yaml") },
];

fn chart_dir() -> PathBuf {
    mesh_tests::tools::repo_root().join("charts/mesh")
}

/// Runs `helm template` on `chart` and returns (success, stdout, stderr).
fn helm_template_raw(chart: &Path, release: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let helm = Tool::Helm.path()?;
    let out = Command::new(&helm)
        .arg("template")
        .arg(release)
        .arg(chart)
        .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION])
        .args(args)
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    Ok((out.status.success(), String::from_utf8(out.stdout)?, String::from_utf8(out.stderr)?))
}

/// Renders the chart, failing with helm's message when it does not render.
fn render(release: &str, args: &[&str]) -> Result<String> {
    let (ok, stdout, stderr) = helm_template_raw(&chart_dir(), release, args)?;
    ensure!(ok, "helm template {release} {args:?} failed:\n{stderr}");
    Ok(stdout)
}

fn render_set(set: &ValueSet) -> Result<String> {
    let file = set.values_file.map(|f| chart_dir().join(f));
    let file = file.as_ref().map(|f| f.to_string_lossy().into_owned());
    let args: Vec<&str> = file.as_deref().map(|f| vec!["-f", f]).unwrap_or_default();
    render(set.release, &args)
}

/// The non-empty YAML documents of a rendered chart, as JSON values.
fn documents(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = mesh_core::documents::parse_documents(text).context("helm output is not YAML")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn kind_of(obj: &Value) -> (&str, &str, &str) {
    (
        obj["apiVersion"].as_str().unwrap_or(""),
        obj["kind"].as_str().unwrap_or(""),
        obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
    )
}

/// The one object of `kind` (and type `T`) among `docs`.
fn one<T: DeserializeOwned>(docs: &[Value], kind: &str) -> Result<T> {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    ensure!(found.len() == 1, "expected one {kind}, found {}", found.len());
    Ok(serde_json::from_value(found[0].clone())?)
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in docs {
        *out.entry(kind_of(d).1.to_string()).or_insert(0) += 1;
    }
    out
}

/// Every place where `input` and `back` differ: fields the type does not know ("unknown field"),
/// fields it added, and changed values.
fn diff(path: &str, input: &Value, back: &Value, out: &mut Vec<String>) {
    match (input, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{path}/{k}"), v, w, out),
                    None => out.push(format!("unknown field {path}/{k}")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("field added by the type: {path}/{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}/{i}"), v, w, out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if input == back => {}
        _ => out.push(format!("{path}: {input} became {back}")),
    }
}

/// Deserializes `obj` as `T`, serializes it back and requires the same JSON: nothing unknown, nothing lost.
fn strict<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<()> {
    let typed: T = serde_json::from_value(obj.clone()).with_context(|| format!("{:?}", kind_of(obj)))?;
    let back = serde_json::to_value(&typed)?;
    let mut diffs = Vec::new();
    diff("", obj, &back, &mut diffs);
    ensure!(diffs.is_empty(), "{:?} does not round-trip through its type:\n  {}", kind_of(obj), diffs.join("\n  "));
    Ok(())
}

/// Parses one rendered object strictly as its type, chosen by apiVersion and kind.
fn strict_parse(obj: &Value) -> Result<()> {
    match (kind_of(obj).0, kind_of(obj).1) {
        ("v1", "ConfigMap") => strict::<ConfigMap>(obj),
        ("v1", "Service") => strict::<Service>(obj),
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(obj),
        ("apps/v1", "Deployment") => strict::<Deployment>(obj),
        ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(obj),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => strict::<ClusterRoleBinding>(obj),
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(obj),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(obj),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            strict::<MutatingWebhookConfiguration>(obj)
        }
        ("cert-manager.io/v1", "Certificate") => strict::<crd::Object<crd::CertificateSpec>>(obj),
        ("cert-manager.io/v1", "Issuer") => strict::<crd::Object<crd::IssuerSpec>>(obj),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => strict::<crd::Object<crd::ServiceMonitorSpec>>(obj),
        (api, kind) => bail!("the chart renders {api} {kind}, which this test does not know"),
    }
}

/// Strict models of the custom resources the chart renders (the fields of cert-manager v1 and
/// Prometheus Operator v1 that exist in their CRD schemas; anything else is an unknown field).
mod crd {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde::{Deserialize, Serialize};

    /// A custom resource: apiVersion, kind, metadata and spec, nothing else.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Object<S> {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: S,
    }

    /// cert-manager.io/v1 Certificate spec.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct CertificateSpec {
        pub secret_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub common_name: Option<String>,
        pub dns_names: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub duration: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub renew_before: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub private_key: Option<PrivateKey>,
        pub usages: Vec<KeyUsage>,
        pub issuer_ref: IssuerRef,
        #[serde(rename = "isCA", skip_serializing_if = "Option::is_none")]
        pub is_ca: Option<bool>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct PrivateKey {
        pub algorithm: KeyAlgorithm,
        pub size: u32,
        pub rotation_policy: RotationPolicy,
    }

    #[derive(Debug, Deserialize, Serialize)]
    pub enum KeyAlgorithm {
        #[serde(rename = "RSA")]
        Rsa,
        #[serde(rename = "ECDSA")]
        Ecdsa,
        Ed25519,
    }

    #[derive(Debug, Deserialize, Serialize)]
    pub enum RotationPolicy {
        Never,
        Always,
    }

    #[derive(Debug, Deserialize, Serialize)]
    pub enum KeyUsage {
        #[serde(rename = "digital signature")]
        DigitalSignature,
        #[serde(rename = "key encipherment")]
        KeyEncipherment,
        #[serde(rename = "client auth")]
        ClientAuth,
        #[serde(rename = "server auth")]
        ServerAuth,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct IssuerRef {
        pub name: String,
        pub kind: IssuerKind,
        pub group: String,
    }

    #[derive(Debug, Deserialize, Serialize)]
    pub enum IssuerKind {
        Issuer,
        ClusterIssuer,
    }

    /// cert-manager.io/v1 Issuer spec (the self-signed form).
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct IssuerSpec {
        pub self_signed: SelfSigned,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct SelfSigned {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub crl_distribution_points: Option<Vec<String>>,
    }

    /// monitoring.coreos.com/v1 ServiceMonitor spec.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ServiceMonitorSpec {
        pub selector: LabelSelector,
        pub namespace_selector: NamespaceSelector,
        pub endpoints: Vec<Endpoint>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct NamespaceSelector {
        pub match_names: Vec<String>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Endpoint {
        pub port: String,
        pub path: String,
        pub scheme: Scheme,
        pub interval: String,
        pub scrape_timeout: String,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Scheme {
        Http,
        Https,
    }
}

#[test]
fn goldens_match_helm_template() {
    let golden_dir = mesh_tests::tools::repo_root().join("tests/golden/chart");
    let mut failures = Vec::new();
    for set in &VALUE_SETS {
        let rendered = render_set(set).unwrap();
        if let Err(e) = mesh_tests::check_golden(&golden_dir.join(format!("{}.yaml", set.name)), &rendered) {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "{}\n(review, then run with UPDATE_GOLDEN=1)", failures.join("\n"));
}

#[test]
fn every_rendered_object_parses_strictly_as_its_kubernetes_type() {
    for set in &VALUE_SETS {
        let docs = documents(&render_set(set).unwrap()).unwrap();
        for doc in &docs {
            strict_parse(doc).unwrap_or_else(|e| panic!("value set {}: {e:#}", set.name));
        }
        let kinds = kinds(&docs);
        let count = |k: &str| kinds.get(k).copied().unwrap_or(0);
        for k in ["Deployment", "Service", "ServiceAccount", "ConfigMap", "MutatingWebhookConfiguration"] {
            assert_eq!(count(k), 1, "value set {}: {k} in {kinds:?}", set.name);
        }
        assert_eq!(count("PodDisruptionBudget"), usize::from(set.name != "single-replica"), "{}: PDB", set.name);
        assert_eq!(count("Certificate"), usize::from(set.name == "cert-manager"), "{}: Certificate", set.name);
        assert_eq!(count("Issuer"), usize::from(set.name == "cert-manager"), "{}: Issuer", set.name);
        assert_eq!(count("ServiceMonitor"), usize::from(set.name == "monitoring"), "{}: ServiceMonitor", set.name);
        let self_signed = !matches!(set.name, "cert-manager" | "existing-secret");
        assert_eq!(count("Role"), usize::from(self_signed), "{}: Role", set.name);
        assert_eq!(count("RoleBinding"), usize::from(self_signed), "{}: RoleBinding", set.name);
    }
}

#[test]
fn strict_parse_rejects_an_unknown_field() {
    // The strictness itself must be able to fail: a typo'd field in a Deployment is caught.
    let docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let mut deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap().clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = Value::Bool(true);
    let err = strict_parse(&deployment).unwrap_err().to_string();
    assert!(err.contains("unknown field /spec/template/spec/containers/0/readOnlyRootFileSystem"), "{err}");
    let mut cert = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "x"}, "spec": {"selfSigned": {}, "acme": {}}});
    assert!(strict_parse(&cert).is_err());
    cert["spec"] = serde_json::json!({"selfSigned": {}});
    strict_parse(&cert).unwrap();
}

/// The InjectConfig in the rendered ConfigMap, as text.
fn rendered_config(docs: &[Value]) -> Result<String> {
    let cm: ConfigMap = one(docs, "ConfigMap")?;
    cm.data.and_then(|mut d| d.remove("config.yaml")).context("the ConfigMap has no config.yaml")
}

#[test]
fn configmap_is_a_strict_inject_config_with_the_codes_defaults() {
    for set in &VALUE_SETS {
        let docs = documents(&render_set(set).unwrap()).unwrap();
        let text = rendered_config(&docs).unwrap();
        let cfg = InjectConfig::from_yaml(&text).unwrap_or_else(|e| panic!("value set {}: {e}", set.name));
        // Every key the chart writes is known to the code, and every key the code has is written.
        let written: Value = serde_saphyr::from_str(&text).unwrap();
        let mut diffs = Vec::new();
        diff("", &written, &serde_json::to_value(&cfg).unwrap(), &mut diffs);
        assert!(
            diffs.is_empty(),
            "value set {}: the chart's config and InjectConfig differ:\n{}",
            set.name,
            diffs.join("\n")
        );
        let expected = InjectConfig {
            revision: if set.name == "revision" { "canary".into() } else { String::new() },
            ..InjectConfig::default()
        };
        assert_eq!(cfg, expected, "value set {}: the chart's defaults must be InjectConfig's defaults", set.name);
    }
}

#[test]
fn values_reach_the_inject_config() {
    let docs = documents(
        &render(
            "mesh",
            &[
                "--set",
                "images.proxy.tag=1.29.1,images.init.registry=registry.example/mesh,images.init.tag=9.9.9",
                "--set",
                "inject.nativeSidecars=disabled,inject.holdApplicationUntilProxyStarts=true,inject.cni.enabled=true",
                "--set",
                "inject.excludeInboundPorts=8080\\,9090,inject.includeIPRanges=10.0.0.0/8,inject.policy=disabled",
                "--set",
                "inject.proxy.resources.requests.cpu=250m,inject.neverInjectSelector[0].matchLabels.job=batch",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    let cfg = InjectConfig::from_yaml(&rendered_config(&docs).unwrap()).unwrap();
    assert_eq!(cfg.proxy.image, "docker.io/istio/proxyv2:1.29.1");
    assert_eq!(cfg.proxy_init.image, "registry.example/mesh/mesh-init:9.9.9");
    assert_eq!(cfg.native_sidecars, mesh_core::inject::NativeSidecars::Disabled);
    assert_eq!(cfg.policy, mesh_core::inject::InjectPolicy::Disabled);
    assert!(cfg.hold_application_until_proxy_starts && cfg.cni.enabled);
    assert_eq!((cfg.exclude_inbound_ports.as_str(), cfg.include_ip_ranges.as_str()), ("8080,9090", "10.0.0.0/8"));
    assert_eq!(cfg.proxy.resources.requests.get("cpu").map(String::as_str), Some("250m"));
    assert_eq!(cfg.never_inject_selector[0].match_labels.get("job").map(String::as_str), Some("batch"));
    // A digest wins over the tag.
    let digest = format!("sha256:{}", "a".repeat(64));
    let docs = documents(&render("mesh", &["--set", &format!("images.proxy.digest={digest}")]).unwrap()).unwrap();
    let cfg = InjectConfig::from_yaml(&rendered_config(&docs).unwrap()).unwrap();
    assert_eq!(cfg.proxy.image, format!("docker.io/istio/proxyv2@{digest}"));
}

#[test]
fn bad_values_fail_with_a_message_naming_them() {
    // Helm 4 names a value as a JSON pointer (`/webhook/failurePolicy`), Helm 3 with dots; either will do.
    let names =
        |stderr: &str, path: &str| stderr.contains(path) || stderr.contains(&format!("/{}", path.replace('.', "/")));
    let cases: [(&str, &str); 11] = [
        ("replicaCont=3", "replicaCont"),
        ("replicaCount=0", "replicaCount"),
        ("webhook.failurePolicy=Sometimes", "webhook.failurePolicy"),
        ("webhook.timeoutSeconds=31", "webhook.timeoutSeconds"),
        ("revision=Canary_1", "revision"),
        ("certificates.mode=vault", "certificates.mode"),
        ("certificates.mode=existingSecret", "certificates.existingSecret.name"),
        ("inject.nativeSidecar=auto", "nativeSidecar"),
        ("inject.proxy.image=example/proxy:1", "image"),
        ("inject.interceptionMode=SIDEWAYS", "inject.interceptionMode"),
        ("workerThreads=-1", "workerThreads"),
    ];
    for (set, path) in cases {
        let (ok, _, stderr) = helm_template_raw(&chart_dir(), "mesh", &["--set", set]).unwrap();
        assert!(!ok, "--set {set} must be rejected");
        assert!(names(&stderr, path), "--set {set}: the error must name {path:?}:\n{stderr}");
    }
}

#[test]
fn deployment_is_hardened_probed_and_drains_like_the_webhook() {
    let docs = documents(&render("mesh", &["--set", "drainTimeoutSeconds=45"]).unwrap()).unwrap();
    let deploy: Deployment = one(&docs, "Deployment").unwrap();
    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(55), "drain 45 s + 10");
    let affinity = pod.affinity.unwrap().pod_anti_affinity.unwrap();
    assert!(!affinity.preferred_during_scheduling_ignored_during_execution.unwrap_or_default().is_empty());
    let spread = pod.topology_spread_constraints.unwrap_or_default();
    let keys: Vec<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
    assert_eq!(keys, ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]);
    let pod_sc = pod.security_context.unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels.get("sidecar.istio.io/inject").map(String::as_str), Some("false"), "never inject the injector");

    let [c] = pod.containers.as_slice() else { panic!("one container expected") };
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert!(sc.run_as_user.unwrap() != 0);
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert!(c.resources.as_ref().unwrap().requests.is_some() && c.resources.as_ref().unwrap().limits.is_some());

    let ports: BTreeMap<String, i32> =
        c.ports.clone().unwrap().into_iter().map(|p| (p.name.unwrap(), p.container_port)).collect();
    assert_eq!(ports["https-webhook"], i32::from(mesh_core::ports::WEBHOOK_HTTPS));
    assert_eq!(ports["http-monitoring"], 15014);
    for (probe, path) in [(c.liveness_probe.clone(), "/healthz"), (c.readiness_probe.clone(), "/readyz")] {
        let get = probe.unwrap().http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http-monitoring".into())
        );
    }
    let args = c.args.clone().unwrap();
    for want in [
        "--listen=0.0.0.0:15017",
        "--health-listen=0.0.0.0:15014",
        "--config=/etc/mesh/config/config.yaml",
        "--self-signed",
        "--service-name=mesh-webhook",
        "--namespace=mesh-system",
        "--secret-name=mesh-webhook-tls",
        "--webhook-config-selector=app.kubernetes.io/instance=mesh,app.kubernetes.io/component=webhook",
        "--drain-timeout=45s",
        "--log-format=json",
        "--max-connections=1024",
    ] {
        assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--tls-")), "self-signed mode has no certificate files: {args:?}");
    let default_grace = one::<Deployment>(&documents(&render("mesh", &[]).unwrap()).unwrap(), "Deployment").unwrap();
    assert_eq!(default_grace.spec.unwrap().template.spec.unwrap().termination_grace_period_seconds, Some(30));
}

#[test]
fn file_certificate_modes_mount_the_secret_and_skip_self_signing() {
    for set in VALUE_SETS.iter().filter(|s| matches!(s.name, "cert-manager" | "existing-secret")) {
        let docs = documents(&render_set(set).unwrap()).unwrap();
        let deploy: Deployment = one(&docs, "Deployment").unwrap();
        let pod = deploy.spec.unwrap().template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--tls-cert=/etc/mesh/tls/tls.crt".to_string()), "{}: {args:?}", set.name);
        assert!(args.contains(&"--tls-key=/etc/mesh/tls/tls.key".to_string()), "{}: {args:?}", set.name);
        assert!(!args.iter().any(|a| a == "--self-signed"), "{}: {args:?}", set.name);
        let secret = if set.name == "cert-manager" { "mesh-webhook-tls" } else { "mesh-webhook-serving" };
        let volumes = pod.volumes.unwrap();
        let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
        assert_eq!(tls.secret.as_ref().unwrap().secret_name.as_deref(), Some(secret), "{}", set.name);
        let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
        if set.name == "cert-manager" {
            let cert = docs.iter().find(|d| d["kind"] == "Certificate").unwrap();
            assert_eq!(cert["spec"]["secretName"], secret);
            let dns: Vec<&str> =
                cert["spec"]["dnsNames"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            assert!(dns.contains(&"mesh-webhook.mesh-system.svc"), "{dns:?}");
            let annotation = mwc.metadata.annotations.unwrap()["cert-manager.io/inject-ca-from"].clone();
            assert_eq!(annotation, format!("{NAMESPACE}/{}", cert["metadata"]["name"].as_str().unwrap()));
        } else {
            for w in mwc.webhooks.unwrap() {
                assert!(w.client_config.ca_bundle.is_some(), "{}: caBundle of {}", set.name, w.name);
            }
        }
    }
}

#[test]
fn istio_config_mounts_istios_configmaps_as_the_istio_config_dir() {
    let set = VALUE_SETS.iter().find(|s| s.name == "istio-config").unwrap();
    let docs = documents(&render_set(set).unwrap()).unwrap();
    let deploy: Deployment = one(&docs, "Deployment").unwrap();
    let pod = deploy.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert!(args.iter().any(|a| a == "--istio-config=/etc/mesh/istio"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--config")),
        "--config and --istio-config exclude each other: {args:?}"
    );
    let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == "/etc/mesh/istio").unwrap();
    let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == mount.name).unwrap();
    let sources = volume.projected.unwrap().sources.unwrap();
    let files: Vec<(String, String, String)> = sources
        .iter()
        .filter_map(|s| s.config_map.as_ref())
        .flat_map(|cm| cm.items.iter().flatten().map(|i| (cm.name.clone(), i.key.clone(), i.path.clone())))
        .collect();
    let want = |cm: &str, key: &str| (cm.to_string(), key.to_string(), key.to_string());
    assert_eq!(
        files,
        [want("istio", "mesh"), want("istio-sidecar-injector", "config"), want("istio-sidecar-injector", "values")]
    );
    // The directory holds exactly the files --istio-config reads.
    let paths: Vec<&str> = files.iter().map(|(_, _, p)| p.as_str()).collect();
    assert_eq!(paths, mesh_core::inject::istio_config::FILES);
    let renamed = documents(
        &render(
            "mesh",
            &[
                "--set",
                "istioConfig.fromConfigMaps.enabled=true",
                "--set",
                "istioConfig.fromConfigMaps.mesh=istio-canary",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    let text = serde_json::to_string(&renamed).unwrap();
    assert!(text.contains("\"istio-canary\""), "the mesh ConfigMap name is a value");
}

fn rules_of(docs: &[Value], kind: &str) -> Result<Vec<PolicyRule>> {
    let obj = docs.iter().find(|d| d["kind"] == kind).with_context(|| format!("no {kind}"))?;
    Ok(serde_json::from_value(obj["rules"].clone())?)
}

fn rule(groups: &str, resource: &str, names: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![groups.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        verbs: strings(verbs),
        non_resource_urls: None,
    }
}

#[test]
fn rbac_is_least_privilege() {
    let docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
    let mwc_name = mwc.metadata.name.unwrap();
    assert_eq!(
        rules_of(&docs, "ClusterRole").unwrap(),
        [
            rule("", "nodes", &[], &["get", "list", "watch"]),
            rule("admissionregistration.k8s.io", "mutatingwebhookconfigurations", &[], &["list", "watch"]),
            rule("admissionregistration.k8s.io", "mutatingwebhookconfigurations", &[&mwc_name], &["get", "patch"]),
        ]
    );
    assert_eq!(
        rules_of(&docs, "Role").unwrap(),
        [
            rule("", "secrets", &[], &["create"]),
            rule("", "secrets", &["mesh-webhook-tls"], &["get", "update"]),
            rule("", "configmaps", &["mesh-webhook"], &["get"]),
        ]
    );
    // The selector the webhook is given selects this configuration (and not the other release's).
    let labels = mwc.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "mesh");
    assert_eq!(labels["app.kubernetes.io/component"], "webhook");
    let canary = documents(&render("mesh-canary", &["--set", "revision=canary"]).unwrap()).unwrap();
    let canary_mwc: MutatingWebhookConfiguration = one(&canary, "MutatingWebhookConfiguration").unwrap();
    assert_ne!(canary_mwc.metadata.labels.unwrap()["app.kubernetes.io/instance"], "mesh");
    // With certificates from cert-manager or a Secret, the webhook only reads nodes.
    let docs = documents(&render("mesh", &["--set", "certificates.mode=certManager"]).unwrap()).unwrap();
    assert_eq!(rules_of(&docs, "ClusterRole").unwrap(), [rule("", "nodes", &[], &["get", "list", "watch"])]);
    let bindings: ClusterRoleBinding = one(&docs, "ClusterRoleBinding").unwrap();
    let subject = &bindings.subjects.unwrap()[0];
    assert_eq!((subject.kind.as_str(), subject.name.as_str()), ("ServiceAccount", "mesh-webhook"));
    assert_eq!(subject.namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn service_maps_443_to_the_webhook_port() {
    let docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let svc: Service = one(&docs, "Service").unwrap();
    let spec = svc.spec.unwrap();
    let https = spec.ports.unwrap().into_iter().find(|p| p.port == 443).unwrap();
    assert_eq!(
        https.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("https-webhook".into()))
    );
    let deploy: Deployment = one(&docs, "Deployment").unwrap();
    let deploy = deploy.spec.unwrap();
    assert_eq!(spec.selector, deploy.selector.match_labels);
    let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
    for w in mwc.webhooks.unwrap() {
        let s = w.client_config.service.unwrap();
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str(), s.port, s.path.as_deref()),
            (svc.metadata.name.as_deref().unwrap(), NAMESPACE, Some(443), Some("/inject"))
        );
    }
}

#[test]
fn webhook_settings_are_istios_and_configurable() {
    let docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
    let webhooks = mwc.webhooks.unwrap();
    let names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rev.namespace.sidecar-injector.istio.io",
            "rev.object.sidecar-injector.istio.io",
            "namespace.sidecar-injector.istio.io",
            "object.sidecar-injector.istio.io"
        ]
    );
    for w in &webhooks {
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"), "{}", w.name);
        assert_eq!(w.side_effects, "None", "{}", w.name);
        assert_eq!(w.admission_review_versions, ["v1"], "{}", w.name);
        assert_eq!(w.timeout_seconds, Some(10), "{}", w.name);
        assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"), "{}", w.name);
        assert!(matches_request(w, "CREATE", "", "v1", "pods"), "{}", w.name);
        assert!(!matches_request(w, "UPDATE", "", "v1", "pods"), "{}: only CREATE", w.name);
        assert!(!matches_request(w, "CREATE", "apps", "v1", "deployments"), "{}: only pods", w.name);
    }
    let docs = documents(
        &render(
            "mesh",
            &["--set", "webhook.failurePolicy=Ignore,webhook.timeoutSeconds=5,webhook.path=/inject/cluster/c1/net/n1"],
        )
        .unwrap(),
    )
    .unwrap();
    let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
    for w in mwc.webhooks.unwrap() {
        assert_eq!((w.failure_policy.as_deref(), w.timeout_seconds), (Some("Ignore"), Some(5)), "{}", w.name);
        assert_eq!(w.client_config.service.unwrap().path.as_deref(), Some("/inject/cluster/c1/net/n1"));
    }
}

#[test]
fn ignored_namespaces_default_to_mesh_cores_list() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    let listed: Vec<&str> =
        values["webhook"]["ignoredNamespaces"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(listed, mesh_core::names::IGNORED_NAMESPACES);
}

/// Dotted paths of every leaf of a values tree (an empty map or list is a leaf).
fn leaf_paths(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_paths(&p, child, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn readme_lists_every_value_and_no_other() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    let mut paths = BTreeSet::new();
    leaf_paths("", &values, &mut paths);
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let (_, table) = readme.split_once("\n## Values\n").expect("README.md has a ## Values section");
    let documented: BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(str::to_string))
        .collect();
    let missing: Vec<_> = paths.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&paths).collect();
    assert!(missing.is_empty(), "values missing from charts/mesh/README.md: {missing:?}");
    assert!(stale.is_empty(), "README.md lists values that do not exist: {stale:?}");
}

/// Every property of a JSON schema object node, recursively, as dotted paths; free-form maps are leaves.
fn schema_paths(prefix: &str, node: &Value, out: &mut BTreeSet<String>) {
    match node.get("properties").and_then(Value::as_object) {
        Some(props) => {
            for (k, child) in props {
                schema_paths(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, child, out);
            }
        }
        None => {
            out.insert(prefix.to_string());
        }
    }
}

/// Dotted paths of a serialized InjectConfig, stopping where the schema has a leaf (free-form maps).
fn config_paths(prefix: &str, v: &Value, leaves: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if !leaves.contains(prefix) && !m.is_empty() => {
            for (k, child) in m {
                config_paths(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, child, leaves, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn schema_covers_exactly_the_inject_config() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap()).unwrap();
    let mut in_schema = BTreeSet::new();
    schema_paths("", &schema["properties"]["inject"], &mut in_schema);
    let mut in_code = BTreeSet::new();
    config_paths("", &serde_json::to_value(InjectConfig::default()).unwrap(), &in_schema, &mut in_code);
    // The chart sets these from images.* and revision.
    for set_by_chart in ["proxy.image", "proxyInit.image", "revision"] {
        assert!(in_code.remove(set_by_chart), "InjectConfig has no {set_by_chart}");
    }
    assert_eq!(in_schema, in_code, "values.schema.json's inject section must list exactly InjectConfig's keys");
}

/// Whether a webhook's rules cover a request (operation, group, version, resource), like the API server.
fn matches_request(w: &MutatingWebhook, op: &str, group: &str, version: &str, resource: &str) -> bool {
    let has = |list: &Option<Vec<String>>, x: &str| list.iter().flatten().any(|v| v == "*" || v == x);
    w.rules.iter().flatten().any(|r| {
        has(&r.operations, op)
            && has(&r.api_groups, group)
            && has(&r.api_versions, version)
            && has(&r.resources, resource)
    })
}

/// Evaluates a label selector the way the API server does, with mesh-core's evaluator (the one
/// `kubectl mesh check-inject` uses): a missing selector matches everything, matchLabels and
/// matchExpressions are ANDed, NotIn and DoesNotExist match an absent label, and a malformed
/// requirement (In/NotIn without values, Exists/DoesNotExist with values) is an error.
fn selects(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> Result<bool> {
    let core = match sel {
        Some(sel) => Some(serde_json::from_value::<mesh_core::selector::LabelSelector>(serde_json::to_value(sel)?)?),
        None => None,
    };
    Ok(mesh_core::selector::LabelSelector::evaluate(core.as_ref(), labels)?)
}

/// The names of the webhooks of `mwc` that the API server calls for a pod CREATE in a namespace.
fn calls(
    mwc: &MutatingWebhookConfiguration,
    ns: &BTreeMap<String, String>,
    pod: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for w in mwc.webhooks.iter().flatten() {
        if matches_request(w, "CREATE", "", "v1", "pods")
            && selects(w.namespace_selector.as_ref(), ns)?
            && selects(w.object_selector.as_ref(), pod)?
        {
            out.push(w.name.clone());
        }
    }
    Ok(out)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A namespace of the table: its name and labels (the API server adds kubernetes.io/metadata.name).
fn namespace(name: &str, pairs: &[(&str, &str)]) -> (String, BTreeMap<String, String>) {
    let mut l = labels(pairs);
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    (name.to_string(), l)
}

/// The pods of the table, in column order.
fn pods() -> Vec<(&'static str, BTreeMap<String, String>)> {
    vec![
        ("plain", labels(&[("app", "a")])),
        ("opt-out", labels(&[("sidecar.istio.io/inject", "false")])),
        ("opt-in", labels(&[("sidecar.istio.io/inject", "true")])),
        ("rev-default", labels(&[("istio.io/rev", "default")])),
        ("rev-canary", labels(&[("istio.io/rev", "canary")])),
        ("opt-in+rev-canary", labels(&[("sidecar.istio.io/inject", "true"), ("istio.io/rev", "canary")])),
        ("opt-out+rev-canary", labels(&[("sidecar.istio.io/inject", "false"), ("istio.io/rev", "canary")])),
    ]
}

/// A row of [`EXPECTED`]: namespace name, its labels, and the decision per pod.
type Row = (&'static str, &'static [(&'static str, &'static str)], &'static str);

/// Which release injects each pod of each namespace, Istio's way: D = the default revision (release
/// "mesh"), C = the canary revision (release "mesh-canary"), - = neither. Columns are [`pods`].
const EXPECTED: [Row; 10] = [
    ("labelled", &[("istio-injection", "enabled")], "D-DDDD-"),
    ("disabled", &[("istio-injection", "disabled")], "-------"),
    ("rev-default", &[("istio.io/rev", "default")], "D-DDDD-"),
    ("rev-canary", &[("istio.io/rev", "canary")], "C-CCCC-"),
    ("labelled-and-rev-canary", &[("istio-injection", "enabled"), ("istio.io/rev", "canary")], "D-DDDD-"),
    ("unlabelled", &[], "--DDCC-"),
    ("kube-system", &[("istio-injection", "enabled")], "-------"),
    ("kube-public", &[("istio.io/rev", "default")], "-------"),
    ("kube-node-lease", &[], "-------"),
    ("local-path-storage", &[("istio.io/rev", "canary")], "-------"),
];

fn mwc_of(text: &str) -> Result<MutatingWebhookConfiguration> {
    one(&documents(text)?, "MutatingWebhookConfiguration")
}

/// Istio's own MutatingWebhookConfiguration for `revision`, rendered from its chart template in the
/// shared conformance data inside a throwaway chart.
fn istio_reference(revision: &str, by_default: bool) -> Result<MutatingWebhookConfiguration> {
    let template = mesh_tests::shared_dir()?.join("conformance/istio-inject/reference/mutatingwebhook.yaml");
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("templates"))?;
    std::fs::write(dir.path().join("Chart.yaml"), "apiVersion: v2\nname: istiod\nversion: 1.0.0\n")?;
    std::fs::write(
        dir.path().join("values.yaml"),
        format!(
            "revision: {revision:?}\nownerName: \"\"\nistiodRemote: {{injectionPath: /inject, injectionURL: \"\", injectionCABundle: \"\"}}\n\
             sidecarInjectorWebhook: {{reinvocationPolicy: Never, enableNamespacesByDefault: {by_default}}}\n\
             sidecarInjectorWebhookAnnotations: {{}}\nglobal: {{resourceScope: all, operatorManageWebhooks: false}}\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("templates/_helpers.tpl"),
        "{{- define \"istio.labels\" -}}\napp.kubernetes.io/part-of: istio\n{{- end }}\n",
    )?;
    std::fs::copy(&template, dir.path().join("templates/mutatingwebhook.yaml"))
        .with_context(|| format!("reading {}", template.display()))?;
    let (ok, stdout, stderr) = helm_template_raw(dir.path(), "istiod", &[])?;
    ensure!(ok, "rendering Istio's webhook template failed:\n{stderr}");
    mwc_of(&stdout)
}

/// One release's decision for every (namespace, pod) of the table, as rows of the EXPECTED alphabet.
fn decisions(mwc: &MutatingWebhookConfiguration, mark: char) -> Result<Vec<String>> {
    let mut rows = Vec::new();
    for (name, ns_labels, _) in EXPECTED {
        let (_, ns) = namespace(name, ns_labels);
        let mut row = String::new();
        for (pod_name, pod) in pods() {
            let called = calls(mwc, &ns, &pod)?;
            ensure!(called.len() <= 1, "namespace {name}, pod {pod_name}: several webhooks match: {called:?}");
            row.push(if called.is_empty() { '-' } else { mark });
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Keeps only `mark` in an EXPECTED row.
fn only(row: &str, mark: char) -> String {
    row.chars().map(|c| if c == mark { c } else { '-' }).collect()
}

#[test]
fn selectors_choose_exactly_what_istio_chooses() {
    let default = mwc_of(&render("mesh", &[]).unwrap()).unwrap();
    let canary = mwc_of(&render("mesh-canary", &["--set", "revision=canary"]).unwrap()).unwrap();
    let istio_default = istio_reference("", false).unwrap();
    let istio_canary = istio_reference("canary", false).unwrap();
    for (ours, istio, mark) in [(&default, &istio_default, 'D'), (&canary, &istio_canary, 'C')] {
        let got = decisions(ours, mark).unwrap();
        let istio_got = decisions(istio, mark).unwrap();
        for (i, (name, _, expected)) in EXPECTED.iter().enumerate() {
            assert_eq!(got[i], only(expected, mark), "release {mark}, namespace {name} (columns: {:?})", pod_names());
            if !mesh_core::names::IGNORED_NAMESPACES.contains(name) {
                // Outside the ignored namespaces, the selectors agree with Istio's, pod for pod.
                assert_eq!(
                    got[i], istio_got[i],
                    "release {mark}, namespace {name}: Istio's selectors decide differently"
                );
            }
        }
        // Istio's selectors alone would reach kube-system; ours never do.
        let ks = EXPECTED.iter().position(|(n, _, _)| *n == "kube-system").unwrap();
        if mark == 'D' {
            assert!(istio_got[ks].contains('D'), "the table must exercise the kube-system exclusion");
        }
    }
}

fn pod_names() -> Vec<&'static str> {
    pods().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn two_revisions_install_side_by_side() {
    let default_docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let canary_docs = documents(&render("mesh-canary", &["--set", "revision=canary"]).unwrap()).unwrap();
    // No object of one release has the same kind, namespace and name as an object of the other.
    let ids = |docs: &[Value]| -> BTreeSet<(String, String)> {
        docs.iter().map(|d| (kind_of(d).1.to_string(), kind_of(d).2.to_string())).collect()
    };
    let clash: Vec<_> = ids(&default_docs).intersection(&ids(&canary_docs)).cloned().collect();
    assert!(clash.is_empty(), "objects with the same name in both releases: {clash:?}");
    // Every (namespace, pod) is injected by at most one of them, and by the one Istio picks.
    let default: MutatingWebhookConfiguration = one(&default_docs, "MutatingWebhookConfiguration").unwrap();
    let canary: MutatingWebhookConfiguration = one(&canary_docs, "MutatingWebhookConfiguration").unwrap();
    for (name, ns_labels, expected) in EXPECTED {
        let (_, ns) = namespace(name, ns_labels);
        let row: String = pods()
            .iter()
            .map(|(pod_name, pod)| {
                let d = calls(&default, &ns, pod).unwrap();
                let c = calls(&canary, &ns, pod).unwrap();
                match (d.is_empty(), c.is_empty()) {
                    (true, true) => '-',
                    (false, true) => 'D',
                    (true, false) => 'C',
                    (false, false) => panic!("namespace {name}, pod {pod_name}: both revisions inject ({d:?}, {c:?})"),
                }
            })
            .collect();
        assert_eq!(row, expected, "namespace {name} (columns: {:?})", pod_names());
    }
    // The canary release's own objects carry its revision.
    let canary_cfg = InjectConfig::from_yaml(&rendered_config(&canary_docs).unwrap()).unwrap();
    assert_eq!(canary_cfg.revision, "canary");
    assert_eq!(canary.metadata.labels.unwrap()["istio.io/rev"], "canary");
}

#[test]
fn selector_evaluation_follows_the_api_server() {
    // The evaluator itself: NotIn matches an absent label, In does not; malformed requirements are errors.
    let sel = |v: Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
    let none = labels(&[]);
    let some = labels(&[("k", "v")]);
    let not_in = sel(serde_json::json!({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]}));
    assert!(selects(Some(&not_in), &none).unwrap());
    assert!(!selects(Some(&not_in), &some).unwrap());
    let is_in = sel(serde_json::json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}));
    assert!(!selects(Some(&is_in), &none).unwrap());
    assert!(selects(Some(&is_in), &some).unwrap());
    assert!(selects(Some(&sel(serde_json::json!({}))), &some).unwrap());
    assert!(selects(None, &none).unwrap());
    assert!(selects(Some(&sel(serde_json::json!({"matchLabels": {"k": "w"}}))), &some).is_ok_and(|m| !m));
    let bad = sel(serde_json::json!({"matchExpressions": [{"key": "k", "operator": "In"}]}));
    assert!(selects(Some(&bad), &some).is_err());
    let bad = sel(serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}));
    assert!(selects(Some(&bad), &some).is_err());
}

/// The final stage of a Dockerfile: the lines after its last `FROM`.
fn final_stage(dockerfile: &str) -> Result<Vec<String>> {
    let path = mesh_tests::tools::repo_root().join("images").join(dockerfile);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> = text.lines().map(str::trim).map(str::to_string).collect();
    let from = lines.iter().rposition(|l| l.starts_with("FROM ")).context("no FROM")?;
    Ok(lines[from..].to_vec())
}

#[test]
fn images_match_the_chart() {
    let docs = documents(&render("mesh", &[]).unwrap()).unwrap();
    let deploy: Deployment = one(&docs, "Deployment").unwrap();
    let pod = deploy.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ghcr.io/mesh-project/mesh-webhook:0.1.0"));
    let sc = c.security_context.clone().unwrap();
    // The webhook image runs as the user the chart's hardened securityContext expects, and is distroless.
    let webhook = final_stage("webhook.Dockerfile").unwrap();
    assert!(webhook[0].contains("distroless") && webhook[0].contains("nonroot"), "{}", webhook[0]);
    let user = format!("USER {}:{}", sc.run_as_user.unwrap(), sc.run_as_group.unwrap());
    assert!(webhook.contains(&user), "webhook.Dockerfile must say {user}");
    assert!(webhook.contains(&r#"ENTRYPOINT ["/usr/local/bin/mesh-webhook"]"#.to_string()));
    // The init image has both capture back ends and runs mesh-init.
    let init = final_stage("init.Dockerfile").unwrap().join("\n");
    for want in ["iptables", "nftables", r#"ENTRYPOINT ["/usr/local/bin/mesh-init"]"#] {
        assert!(init.contains(want), "init.Dockerfile's final stage lacks {want}");
    }
    let cfg = InjectConfig::from_yaml(&rendered_config(&docs).unwrap()).unwrap();
    assert_eq!(cfg.proxy_init.image, mesh_core::inject::DEFAULT_PROXY_INIT_IMAGE);
    assert_eq!(cfg.proxy.image, mesh_core::inject::DEFAULT_PROXY_IMAGE);
    assert!(cfg.proxy.image.contains("istio/proxyv2"));
}

#[test]
fn deployment_args_parse_with_the_webhooks_own_flags() {
    use clap::Parser;
    for set in &VALUE_SETS {
        let docs = documents(&render_set(set).unwrap()).unwrap();
        let deploy: Deployment = one(&docs, "Deployment").unwrap();
        let svc: Service = one(&docs, "Service").unwrap();
        let c = deploy.spec.unwrap().template.spec.unwrap().containers.remove(0);
        let argv = std::iter::once("mesh-webhook".to_string()).chain(c.args.unwrap());
        let args = mesh_webhook::Args::try_parse_from(argv).unwrap_or_else(|e| panic!("value set {}: {e}", set.name));
        assert_eq!(args.listen.port(), mesh_core::ports::WEBHOOK_HTTPS, "{}", set.name);
        assert_eq!(args.health_listen.port(), 15014, "{}", set.name);
        assert_eq!(args.drain_timeout, std::time::Duration::from_secs(20), "{}", set.name);
        if set.name == "istio-config" {
            assert_eq!(args.config, None, "{}", set.name);
            assert_eq!(args.istio_config.as_deref(), Some(Path::new("/etc/mesh/istio")), "{}", set.name);
        } else {
            assert_eq!(args.config.as_deref(), Some(Path::new("/etc/mesh/config/config.yaml")), "{}", set.name);
            assert_eq!(args.istio_config, None, "{}", set.name);
        }
        let self_signed = !matches!(set.name, "cert-manager" | "existing-secret");
        assert_eq!(args.self_signed, self_signed, "{}", set.name);
        assert_eq!(args.tls_cert.is_some(), !self_signed, "{}", set.name);
        if self_signed {
            assert_eq!(Some(args.service_name.as_str()), svc.metadata.name.as_deref(), "{}", set.name);
            assert_eq!(args.namespace.as_deref(), Some(NAMESPACE));
            let role: Role = one(&docs, "Role").unwrap();
            let names = role.rules.unwrap().into_iter().flat_map(|r| r.resource_names.unwrap_or_default());
            // The Secret's owner is the chart's ConfigMap (deleted by `helm uninstall`, and the
            // garbage collector deletes the Secret with it).
            let owner = args.secret_owner_configmap.as_deref().unwrap_or_else(|| panic!("{}: no owner", set.name));
            let cm: ConfigMap = one(&docs, "ConfigMap").unwrap();
            assert_eq!(cm.metadata.name.as_deref(), Some(owner), "{}", set.name);
            assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE), "{}", set.name);
            assert_eq!(
                names.collect::<Vec<_>>(),
                vec![args.secret_name.as_str(), owner],
                "{}: RBAC names the Secret and its owner",
                set.name
            );
            let selector = args.webhook_config_selector.unwrap();
            let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
            let mwc_labels = mwc.metadata.labels.unwrap();
            for pair in selector.split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                assert_eq!(mwc_labels.get(k).map(String::as_str), Some(v), "{}: {selector}", set.name);
            }
        }
    }
    // IPv6 and dual-stack clusters bind [::].
    let docs = documents(&render("mesh", &["--set", "webhook.listenAddress=[::]"]).unwrap()).unwrap();
    let deploy: Deployment = one(&docs, "Deployment").unwrap();
    let c = deploy.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let args =
        mesh_webhook::Args::try_parse_from(std::iter::once("mesh-webhook".to_string()).chain(c.args.unwrap())).unwrap();
    assert!(args.listen.is_ipv6() && args.listen.ip().is_unspecified(), "{}", args.listen);
    assert!(args.health_listen.is_ipv6(), "{}", args.health_listen);
}

#[test]
fn selected_pods_are_injected_with_the_charts_config() {
    // The API server's choice (the chart's selectors) and the injector's per-pod rules (mesh-core, with
    // the chart's ConfigMap) agree: every pod the webhook configuration sends is patched, and the
    // ignored namespaces are refused by the injector too.
    use mesh_core::inject::{Decision, InjectRequest, inject};
    for (release, args, mark) in [("mesh", &[][..], 'D'), ("mesh-canary", &["--set", "revision=canary"][..], 'C')] {
        let docs = documents(&render(release, args).unwrap()).unwrap();
        let mwc: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration").unwrap();
        let cfg = InjectConfig::from_yaml(&rendered_config(&docs).unwrap()).unwrap();
        for (name, ns_labels, expected) in EXPECTED {
            let (_, ns) = namespace(name, ns_labels);
            for ((pod_name, pod_labels), want) in pods().into_iter().zip(expected.chars()) {
                let pod = serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name, "labels": pod_labels},
                    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
                });
                let req = InjectRequest { namespace: name, nodes_support_native_sidecars: true, ..Default::default() };
                let decision = inject(&pod, &req, &cfg);
                let selected = !calls(&mwc, &ns, &pod_labels).unwrap().is_empty();
                assert_eq!(selected, want == mark, "{release}: namespace {name}, pod {pod_name}");
                if selected {
                    assert!(
                        matches!(decision, Decision::Patch(ref p) if !p.0.is_empty()),
                        "{release}: namespace {name}, pod {pod_name} is sent to the webhook but not injected: {decision:?}"
                    );
                }
                if mesh_core::names::IGNORED_NAMESPACES.contains(&name) {
                    assert!(matches!(decision, Decision::Skip(_)), "{release}: {name}/{pod_name}: {decision:?}");
                }
            }
        }
    }
}

/// The NOTES.txt that `helm install` prints, from a client-side dry run (no cluster needed).
fn install_notes(release: &str, args: &[&str]) -> Result<String> {
    let helm = Tool::Helm.path()?;
    let out = Command::new(&helm)
        .args(["install", release])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE, "--dry-run=client"])
        .args(args)
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(out.status.success(), "helm install --dry-run=client failed: {}", String::from_utf8_lossy(&out.stderr));
    stdout.split_once("NOTES:").map(|(_, notes)| notes.to_string()).context("helm printed no NOTES")
}

#[test]
fn notes_say_what_to_label_next() {
    let notes = install_notes("mesh", &[]).unwrap();
    assert!(notes.contains("kubectl label namespace <namespace> istio-injection=enabled"), "{notes}");
    assert!(notes.contains("kubectl -n mesh-system rollout status deployment/mesh-webhook"), "{notes}");
    let notes = install_notes("mesh-canary", &["--set", "revision=canary"]).unwrap();
    assert!(notes.contains("kubectl label namespace <namespace> istio.io/rev=canary"), "{notes}");
    assert!(!notes.contains("istio-injection=enabled"), "a revision is not selected by istio-injection: {notes}");
}

#[test]
fn namespaces_by_default_match_istio() {
    // webhook.enableNamespacesByDefault (Istio's sidecarInjectorWebhook.enableNamespacesByDefault) adds the
    // "auto." webhook: every pod of an unlabelled namespace, unless it opts out or names a revision.
    let ours = mwc_of(&render("mesh", &["--set", "webhook.enableNamespacesByDefault=true"]).unwrap()).unwrap();
    let istio = istio_reference("", true).unwrap();
    assert!(ours.webhooks.iter().flatten().any(|w| w.name == "auto.sidecar-injector.istio.io"));
    let got = decisions(&ours, 'D').unwrap();
    let istio_got = decisions(&istio, 'D').unwrap();
    for (i, (name, _, _)) in EXPECTED.iter().enumerate() {
        if mesh_core::names::IGNORED_NAMESPACES.contains(name) {
            assert_eq!(got[i], "-------", "namespace {name} is never injected");
        } else {
            assert_eq!(got[i], istio_got[i], "namespace {name} (columns: {:?})", pod_names());
        }
    }
    let unlabelled = EXPECTED.iter().position(|(n, _, _)| *n == "unlabelled").unwrap();
    assert_eq!(got[unlabelled], "D-DD---", "columns: {:?}", pod_names());
}
