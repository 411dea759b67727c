//! Golden tests of `kubectl mesh explain` over real Envoy config dumps (../shared/fixtures):
//! the whole-pod view and request traces. Regenerate with `UPDATE_GOLDEN=1`.

use std::path::PathBuf;

use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::trace::Peer;
use kubectl_mesh::explain::{Format, Input, Request, explain, render_report};

fn golden_dir() -> PathBuf {
    mesh_tests::tools::repo_root().join("tests/golden/explain")
}

fn dump(name: &str) -> ConfigDump {
    let bytes =
        mesh_test_data::read_shared(&format!("fixtures/envoy-config-dumps/{name}")).unwrap_or_else(|e| panic!("{e}"));
    ConfigDump::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(golden: &str, actual: &str) {
    if let Err(e) = mesh_tests::check_golden(&golden_dir().join(golden), actual) {
        panic!("{e}");
    }
}

fn whole_pod(fixture: &str) -> String {
    let d = dump(fixture);
    let report = explain(&d, Input { source: format!("file {fixture}"), ..Default::default() });
    render_report(&report, Format::Text, false).expect("rendering")
}

fn traced(fixture: &str, to: &str, headers: &[&str]) -> kubectl_mesh::explain::Report {
    let d = dump(fixture);
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let req = Request::parse(to, &headers, None, None).expect("a valid --to");
    explain(&d, Input { source: format!("file {fixture}"), request: Some(&req), ..Default::default() })
}

#[test]
fn whole_pod_views_match_goldens() {
    for (fixture, golden) in [
        ("bookinfo-1.5-productpage-config-dump.json", "bookinfo-productpage.txt"),
        ("istioctl-authz-sidecar-listeners.yaml", "authz-sidecar-listeners.txt"),
        ("istioctl-describe-http_config.json", "describe-http-config.txt"),
        ("istioctl-compare-configdump.json", "compare-configdump.txt"),
        ("istioctl-waypoint-config_dump.json", "waypoint.txt"),
    ] {
        check(golden, &whole_pod(fixture));
    }
}

#[test]
fn bookinfo_traces_match_goldens_and_pick_the_right_cluster() {
    let fixture = "bookinfo-1.5-productpage-config-dump.json";
    let cases: &[(&str, &[&str], &str, Option<&str>)] = &[
        (
            "reviews.default:9080/",
            &[],
            "trace-bookinfo-reviews.txt",
            Some("outbound|9080||reviews.default.svc.cluster.local"),
        ),
        (
            "details:9080/details/0",
            &[],
            "trace-bookinfo-details-short-name.txt",
            Some("outbound|9080||details.default.svc.cluster.local"),
        ),
        ("www.example.com:9080/", &[], "trace-bookinfo-unknown-host.txt", Some("PassthroughCluster")),
        (
            "10.96.0.1:443",
            &[],
            "trace-bookinfo-kubernetes-tcp.txt",
            Some("outbound|443||kubernetes.default.svc.cluster.local"),
        ),
    ];
    for (to, headers, golden, want) in cases {
        let report = traced(fixture, to, headers);
        let t = report.trace.as_ref().unwrap();
        assert_eq!(t.outcome.cluster.as_deref(), *want, "{to}: {:#?}", t.outcome);
        check(golden, &render_report(&report, Format::Text, false).unwrap());
    }
}

#[test]
fn dump_without_listeners_says_so_in_every_format() {
    // istioctl's describe fixture holds only routes and clusters: the trace stops at the listener.
    let fixture = "istioctl-describe-http_config.json";
    let report = traced(fixture, "productpage.default:9080/productpage", &[]);
    assert_eq!(report.trace.as_ref().unwrap().outcome.kind, "no_listener");
    let text = render_report(&report, Format::Text, false).unwrap();
    check("trace-describe-productpage.txt", &text);
    let json: serde_json::Value = serde_json::from_str(&render_report(&report, Format::Json, false).unwrap()).unwrap();
    assert!(json["trace"]["steps"].as_array().unwrap().iter().any(|s| s["stage"] == "capture"));
    assert_eq!((json["apiVersion"].as_str(), json["kind"].as_str()), (Some("mesh.dev/v1alpha1"), Some("Explanation")));
    // YAML is the same document.
    let yaml: serde_json::Value =
        serde_saphyr::from_str(&render_report(&report, Format::Yaml, false).unwrap()).unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn bundled_example_matches_goldens() {
    // The dump captured from the real Envoy in the harness (see explain_example.rs).
    let path = mesh_tests::tools::repo_root().join("examples/explain/foo-config-dump.json");
    let d = ConfigDump::parse(&std::fs::read(&path).unwrap()).unwrap();
    let whole =
        explain(&d, Input { source: "file examples/explain/foo-config-dump.json".into(), ..Default::default() });
    check("example-foo.txt", &render_report(&whole, Format::Text, false).unwrap());
    let req = Request::parse("bar-service.bar-namespace:50002/", &[], None, None).unwrap();
    let traced = explain(
        &d,
        Input {
            source: "file examples/explain/foo-config-dump.json".into(),
            request: Some(&req),
            ..Default::default()
        },
    );
    check("trace-example-bar.json", &render_report(&traced, Format::Json, false).unwrap());
}

fn inbound(d: &ConfigDump, source: &str, spec: &str, peer: Peer) -> kubectl_mesh::explain::Report {
    let req = Request::inbound(spec, &[], None, None).expect("a valid --inbound");
    explain(d, Input { source: source.into(), request: Some(&req), inbound: Some(peer), ..Default::default() })
}

#[test]
fn inbound_traces_match_goldens_and_reach_the_app_port() {
    let d = dump("bookinfo-1.5-productpage-config-dump.json");
    let r = inbound(&d, "file bookinfo-1.5-productpage-config-dump.json", "9080/productpage", Peer::Mtls);
    let t = r.trace.as_ref().expect("a trace");
    assert_eq!(t.outcome.cluster.as_deref(), Some("inbound|9080|http|productpage.default.svc.cluster.local"));
    assert!(t.steps.iter().any(|s| s.stage == "application" && s.chosen == "port 9080"), "{:#?}", t.steps);
    check("inbound-bookinfo-9080.txt", &render_report(&r, Format::Text, false).unwrap());

    let path = mesh_tests::tools::repo_root().join("examples/explain/foo-config-dump.json");
    let foo = ConfigDump::parse(&std::fs::read(&path).unwrap()).unwrap();
    let r = inbound(&foo, "file examples/explain/foo-config-dump.json", "8080/", Peer::Plaintext);
    assert_eq!(r.trace.as_ref().and_then(|t| t.outcome.cluster.as_deref()), Some("inbound|8080||"));
    check("inbound-example-8080.txt", &render_report(&r, Format::Text, false).unwrap());
    // A port virtualInbound has no chain for falls to the passthrough chain, not to the app's chains.
    let r = inbound(&foo, "file examples/explain/foo-config-dump.json", "7070/", Peer::Plaintext);
    let t = r.trace.as_ref().expect("a trace");
    assert!(t.steps.iter().any(|s| s.stage == "filter_chain" && !s.chosen.contains("0.0.0.0_8080")), "{:#?}", t.steps);
    check("inbound-example-7070.txt", &render_report(&r, Format::Text, false).unwrap());
}
