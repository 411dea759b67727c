//! Conformance with Istio's injector: every case of `shared/conformance/istio-inject/cases.yaml`
//! goes through `mesh_core::inject::Injector` (what the webhook calls; the plain `inject` function
//! must give the identical decision), the JSON patch is applied with
//! the json-patch crate, and the pod is compared with Istio's golden output after the normalisation
//! the cases file describes. Prints `inject conformance: N/M`; fails unless every case passes.

use anyhow::{Context, bail};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector, inject};
use mesh_tests::inject_cases::{Case, Expect, compare, load_cases, to_pod};
use serde_json::{Value, json};

fn request() -> InjectRequest<'static> {
    InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

/// Runs one case; `Ok(())` when it matches.
fn run_case(case: &Case) -> anyhow::Result<()> {
    let cfg = InjectConfig::from_yaml(&case.config_yaml)?;
    let injector = Injector::new(cfg.clone());
    // The injector reuses the template parts it rendered for the config: same answer as rendering all.
    let inject = |pod: &Value, req: &InjectRequest, cfg: &InjectConfig| {
        let decision = injector.inject(pod, req);
        assert_eq!(decision, inject(pod, req, cfg), "Injector and inject disagree");
        decision
    };
    match &case.expect {
        Expect::DenyContaining(expected) => {
            for pod in &case.pods {
                match inject(pod, &request(), &cfg) {
                    Decision::Deny(message) if message.to_lowercase().contains(&expected.to_lowercase()) => {}
                    other => bail!("want a deny containing {expected:?}, got {other:?}"),
                }
            }
        }
        Expect::Pods(golden) => {
            for (pod, want) in case.pods.iter().zip(golden) {
                let mut got: Value = pod.clone();
                match inject(pod, &request(), &cfg) {
                    Decision::Patch(patch) => json_patch::patch(&mut got, &patch).context("applying the patch")?,
                    Decision::Skip(_) => {}
                    Decision::Deny(message) => bail!("denied: {message}"),
                }
                let diffs = compare(&got, want)?;
                if !diffs.is_empty() {
                    bail!("{} differences:\n  {}", diffs.len(), diffs.join("\n  "));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn istio_injection_conformance() -> anyhow::Result<()> {
    let cases = load_cases()?;
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &cases {
        match run_case(case) {
            Ok(()) => passed += 1,
            Err(err) => failures.push(format!("{}: {err:#}", case.name)),
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}\n");
    }
    println!("inject conformance: {passed}/{}", cases.len());
    assert!(failures.is_empty(), "inject conformance: {passed}/{}", cases.len());
    Ok(())
}

#[test]
fn harness_turns_a_deployment_into_an_owned_pod() {
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}});
    let pod = to_pod(&deploy).unwrap();
    assert_eq!(pod["metadata"]["generateName"], "web-fake-");
    assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], "fake");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "web-fake");
    assert!(to_pod(&json!({"kind": "Service", "metadata": {"name": "s"}})).is_none());
}
