//! The bundled example, `examples/explain/foo-config-dump.json`: the config dump of pod `foo` in
//! `foo-namespace`, captured from a real Envoy fed by the test discovery server with the classic
//! scenario (foo calls bar-service.bar-namespace:50002). `UPDATE_GOLDEN=1` captures it again; every
//! run checks that a fresh capture and the bundled file both explain as the walkthrough says.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Parser;
use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::report::Report;
use kubectl_mesh::explain::{Input, Request, explain};
use mesh_tests::sidecar::{Sidecar, SidecarSpec};
use mesh_tests::xds::{DiscoveryServer, Scenario};

const BAR: &str = "bar-service.bar-namespace.svc.cluster.local";

fn example_path() -> std::path::PathBuf {
    mesh_tests::tools::repo_root().join("examples/explain/foo-config-dump.json")
}

fn trace_bar(dump: &ConfigDump) -> Report {
    let req = Request::parse("bar-service.bar-namespace:50002/", &[], None, None).expect("valid --to");
    explain(dump, Input { source: "example".into(), request: Some(&req), ..Default::default() })
}

/// The walkthrough: listener 0.0.0.0_50002 → route 50002 → virtual host
/// bar-service.bar-namespace.svc.cluster.local:50002 → cluster outbound|50002|v1|… → 11.0.0.1-3:50002.
fn assert_walkthrough(report: &Report) {
    let t = report.trace.as_ref().expect("a trace");
    let chosen = |stage: &str| {
        t.steps
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| s.chosen.clone())
            .unwrap_or_else(|| panic!("no {stage} step: {t:#?}"))
    };
    assert_eq!(chosen("listener"), "0.0.0.0_50002");
    assert_eq!(chosen("route_config"), "50002");
    assert_eq!(chosen("virtual_host"), format!("{BAR}:50002"));
    let cluster = format!("outbound|50002|v1|{BAR}");
    assert_eq!(chosen("action"), cluster);
    assert_eq!(t.outcome.cluster.as_deref(), Some(cluster.as_str()));
    let endpoints: Vec<&str> = t.outcome.clusters[0].endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(endpoints, ["11.0.0.1:50002", "11.0.0.2:50002", "11.0.0.3:50002"]);
    // Provenance: the Service, the VirtualService and the DestinationRule behind the hops.
    let objects: Vec<String> = report.objects.iter().map(|o| o.object.display()).collect();
    for want in [
        "Service bar-namespace/bar-service",
        "VirtualService bar-namespace/bar-vs",
        "DestinationRule bar-namespace/bar-dr",
    ] {
        assert!(objects.iter().any(|o| o == want), "{want} missing from {objects:?}");
    }
}

async fn capture() -> anyhow::Result<serde_json::Value> {
    let xds = DiscoveryServer::start(Scenario::classic()).await?;
    let sidecar = Sidecar::start(SidecarSpec::new("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)), xds.xds_addr())?;
    sidecar.wait_ready(Duration::from_secs(30)).await?;
    xds.wait_synced(&sidecar.proxy_id(), Duration::from_secs(30)).await?;
    // Bounded wait until the endpoints show up in the dump.
    for _ in 0..100 {
        let dump = sidecar.config_dump("?include_eds").await?;
        if dump.to_string().contains("11.0.0.3") {
            return Ok(dump);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the sidecar's config dump never showed bar-service's endpoints")
}

#[tokio::test]
async fn bundled_example_is_a_real_capture_that_explains_the_walkthrough() {
    let fresh = capture().await.unwrap();
    let fresh_dump = ConfigDump::parse(fresh.to_string().as_bytes()).unwrap();
    assert_walkthrough(&trace_bar(&fresh_dump));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(example_path().parent().unwrap()).unwrap();
        std::fs::write(example_path(), serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let bundled =
        std::fs::read(example_path()).expect("examples/explain/foo-config-dump.json (UPDATE_GOLDEN=1 creates it)");
    assert_walkthrough(&trace_bar(&ConfigDump::parse(&bundled).unwrap()));
    // The bundled file holds the same routing as a fresh capture (timestamps aside).
    let bundled_dump = ConfigDump::parse(&bundled).unwrap();
    assert_eq!(bundled_dump.index().clusters.len(), fresh_dump.index().clusters.len());
    assert_eq!(bundled_dump.index().route_configs.len(), fresh_dump.index().route_configs.len());
}

#[test]
fn readme_run_command_works_offline() {
    // `kubectl mesh explain --file examples/explain/foo-config-dump.json --to bar-service.bar-namespace:50002/`
    let path = example_path();
    let cli = kubectl_mesh::Cli::parse_from([
        "kubectl-mesh",
        "explain",
        "--file",
        path.to_str().unwrap(),
        "--to",
        "bar-service.bar-namespace:50002/",
    ]);
    let mut out = Vec::new();
    let code = kubectl_mesh::run(cli, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    for want in ["listener      0.0.0.0_50002", "route_config  50002", "outbound|50002|v1|", "11.0.0.3:50002"] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // Machine output parses and carries the same decision.
    let cli = kubectl_mesh::Cli::parse_from([
        "kubectl-mesh",
        "explain",
        "-f",
        path.to_str().unwrap(),
        "--to",
        "bar-service.bar-namespace:50002/",
        "-o",
        "json",
    ]);
    let mut out = Vec::new();
    kubectl_mesh::run(cli, &mut out).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["trace"]["outcome"]["cluster"], format!("outbound|50002|v1|{BAR}"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let run = |args: &[&str]| {
        let cli = kubectl_mesh::Cli::try_parse_from(args.iter().copied());
        match cli {
            Err(e) => e.to_string(),
            Ok(cli) => match kubectl_mesh::run(cli, &mut Vec::new()) {
                Ok(code) => format!("exit {code}"),
                Err(e) => format!("{e:#}"),
            },
        }
    };
    let missing = run(&["kubectl-mesh", "explain", "--file", "/nonexistent/dump.json"]);
    assert!(missing.contains("/nonexistent/dump.json"), "{missing}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"configs\": 1}").unwrap();
    let unreadable = run(&["kubectl-mesh", "explain", "--file", bad.to_str().unwrap()]);
    assert!(unreadable.contains("not valid JSON of Envoy's /config_dump shape"), "{unreadable}");
    let example = example_path();
    let malformed = run(&["kubectl-mesh", "explain", "--file", example.to_str().unwrap(), "--to", "bar:99999"]);
    assert!(malformed.contains("invalid --to \"bar:99999\"") && malformed.contains("not a port"), "{malformed}");
    let neither = run(&["kubectl-mesh", "explain"]);
    assert!(neither.contains("pod/NAME"), "{neither}");
}
