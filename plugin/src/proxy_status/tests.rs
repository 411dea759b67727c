//! Unit tests of the pure parts: syncz parsing (both sources), the report, ages, istioctl's table
//! layout (checked against istioctl's own output in the shared fixtures), the diff, flag parsing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::admin::v3::UpdateFailureState;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::{ClientConfig, client_config::GenericXdsConfig};
use envoy_types::pb::google::protobuf::{Struct, Timestamp, Value, value};
use prost::Message;
use serde_json::json;

use super::model::{self, Filter, InjectedPod, IstiodResult, Status, XdsType};
use super::{diff, parse_pod, render};
use crate::cluster::parse_timeout as parse_duration;

fn fixture(name: &str) -> String {
    let bytes = mesh_test_data::read_shared(&format!("fixtures/istio-syncz/{name}")).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("fixtures/istio-syncz/{name}: {e}"))
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn table_layout_matches_istioctls_tabwriter() {
    for name in
        ["multiXdsStatusMultiPilot_verbose.txt", "multiXdsStatusSinglePilot.txt", "multiXdsStatusMultiPilot.txt"]
    {
        let want = fixture(name);
        // istioctl's cells never contain runs of 2+ spaces except as padding, so split on those.
        let rows: Vec<Vec<String>> = want
            .lines()
            .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect())
            .collect();
        assert_eq!(render::tabulate(&rows), want, "{name}");
    }
}

#[test]
fn human_duration_follows_kubernetes() {
    let cases = [
        (3, "3s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (50 * 3600, "2d2h"),
        (9 * 86400, "9d"),
    ];
    for (secs, want) in cases {
        assert_eq!(model::human_duration(Duration::from_secs(secs)), want, "{secs}s");
    }
}

#[test]
fn rfc3339_parses_utc_and_offsets() {
    assert_eq!(model::parse_rfc3339("2023-11-14T22:13:20Z"), Some(at(1_700_000_000)));
    assert_eq!(model::parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(at(1_700_000_000)));
    let t = model::parse_rfc3339("2023-11-14T22:13:20.500000000Z").unwrap();
    assert_eq!(t.duration_since(at(1_700_000_000)).unwrap(), Duration::from_millis(500));
    assert_eq!(model::parse_rfc3339("yesterday"), None);
}

#[test]
fn http_syncz_statuses_errors_and_ages() {
    let body = json!([{
        "proxy": "foo.foo-namespace", "cluster_id": "Kubernetes", "istio_version": "1.28.0",
        "cluster_sent": "3", "cluster_acked": "2", "listener_sent": "4", "listener_acked": "4",
        "route_sent": "", "route_acked": "",
        "resources": {
            "type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "3", "acked": "2", "sentTime": "2023-11-14T22:13:10Z"},
            "type.googleapis.com/envoy.config.listener.v3.Listener": {"sent": "4", "acked": "4", "sentTime": "2023-11-14T22:13:17Z"},
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": {"sent": "5", "acked": "4", "lastError": "bad endpoint"},
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": {"sent": "", "acked": ""}
        }
    }]);
    let syncs = model::from_syncz_json(&body, "istiod-1").unwrap();
    let pods = [InjectedPod { name: "foo".into(), namespace: "foo-namespace".into() }];
    let report = model::build_report(&pods, syncs, vec![], &Filter::default(), at(1_700_000_000));
    let row = &report.proxies[0];
    assert_eq!(row.xds[&XdsType::Cds].status, Status::Stale);
    assert_eq!(model::cell(&row.xds[&XdsType::Cds]), "STALE (10s)");
    assert_eq!(model::cell(&row.xds[&XdsType::Lds]), "SYNCED (3s)");
    assert_eq!(row.xds[&XdsType::Eds].status, Status::Error);
    assert_eq!(row.errors(), ["EDS: bad endpoint"]);
    assert_eq!(model::cell(&row.xds[&XdsType::Rds]), "NOT SENT");
    assert_eq!(model::cell(&row.xds[&XdsType::Ecds]), "IGNORED");
    assert!(!report.synced);
    assert!(model::from_syncz_json(&json!({"not": "an array"}), "istiod-1").unwrap_err().contains("istiod-1"));
}

fn client_config(id: &str, statuses: &[(XdsType, i32, Option<&str>)]) -> Vec<u8> {
    let meta = |v: &str| Value { kind: Some(value::Kind::StringValue(v.into())) };
    ClientConfig {
        node: Some(Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: [("CLUSTER_ID".to_string(), meta("cluster1")), ("ISTIO_VERSION".to_string(), meta("1.20"))]
                    .into(),
            }),
            ..Default::default()
        }),
        generic_xds_configs: statuses
            .iter()
            .map(|(t, s, err)| GenericXdsConfig {
                type_url: t.type_url().into(),
                config_status: *s,
                last_updated: Some(Timestamp { seconds: 1_699_999_880, nanos: 0 }),
                error_state: err.map(|d| UpdateFailureState { details: d.into(), ..Default::default() }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn xds_syncz_reads_client_configs_like_the_fixture() {
    // multiXdsStatusSinglePilot.json: CDS STALE, LDS SYNCED, RDS NOT_SENT, EDS SYNCED, ECDS SYNCED.
    let resources = vec![client_config(
        "proxy1",
        &[
            (XdsType::Cds, 3, None),
            (XdsType::Lds, 1, None),
            (XdsType::Rds, 2, None),
            (XdsType::Eds, 1, None),
            (XdsType::Ecds, 1, None),
        ],
    )];
    let identifier = r#"{"Component":"istiod","ID":"istiod1","Info":{"version":"1.1"}}"#;
    let syncs = model::from_client_configs(&resources, identifier, "fallback").unwrap();
    let report = model::build_report(&[], syncs, vec![], &Filter::default(), at(1_700_000_000));
    let table = render::table(&report, false);
    let want_header = "NAME       CLUSTER      CDS            LDS             EDS             RDS          ECDS            ISTIOD      VERSION";
    assert_eq!(table.lines().next(), Some(want_header));
    assert_eq!(
        table.lines().nth(1),
        Some(
            "proxy1     cluster1     STALE (2m)     SYNCED (2m)     SYNCED (2m)     NOT SENT     SYNCED (2m)     istiod1     1.20"
        )
    );
    assert!(model::from_client_configs(&[vec![0xff, 0xff]], identifier, "x").is_err());
}

#[test]
fn report_lists_not_connected_pods_and_podless_proxies_and_filters() {
    let resources = vec![
        client_config("foo.a", &[(XdsType::Cds, 1, None)]),
        client_config("vm.a", &[(XdsType::Cds, 4, Some("rejected"))]),
        client_config("bar.b", &[(XdsType::Cds, 1, None)]),
    ];
    let syncs = model::from_client_configs(&resources, "{}", "istiod-x").unwrap();
    let pods = [
        InjectedPod { name: "foo".into(), namespace: "a".into() },
        InjectedPod { name: "ghost".into(), namespace: "a".into() },
    ];
    let filter = Filter { namespace: Some("a".into()), ..Default::default() };
    let istiods = vec![IstiodResult { name: "istiod-x".into(), source: Some("xds".into()), error: None, proxies: 3 }];
    let report = model::build_report(&pods, syncs.clone(), istiods, &filter, at(1_700_000_000));
    let names: Vec<&str> = report.proxies.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["foo.a", "ghost.a", "vm.a"], "bar.b is in another namespace");
    assert!(!report.proxies[1].connected && report.proxies[1].xds.values().all(|t| t.status == Status::NotConnected));
    assert!(!report.proxies[2].has_pod);
    assert_eq!(report.proxies[0].istiod, "istiod-x", "no identifier: the pod name");
    let wide = render::table(&report, true);
    assert!(wide.lines().any(|l| l.starts_with("vm.a") && l.ends_with("CDS: rejected")), "{wide}");
    assert!(wide.lines().any(|l| l.starts_with("ghost.a") && l.contains("NOT CONNECTED")), "{wide}");

    // With a label selector only the listed pods' proxies appear.
    let only = Filter { namespace: Some("a".into()), pods_only: true, ..Default::default() };
    let report = model::build_report(&pods, syncs, vec![], &only, at(1_700_000_000));
    assert_eq!(report.proxies.len(), 2);
}

#[test]
fn a_silent_istiod_makes_the_report_unsynced() {
    let syncs = model::from_client_configs(&[client_config("foo.a", &[(XdsType::Cds, 1, None)])], "{}", "i").unwrap();
    let istiods = vec![
        IstiodResult { name: "i".into(), source: Some("http".into()), error: None, proxies: 1 },
        IstiodResult { name: "j".into(), source: None, error: Some("timeout".into()), proxies: 0 },
    ];
    let report = model::build_report(&[], syncs, istiods, &Filter::default(), at(1_700_000_000));
    assert!(report.proxies[0].is_ok());
    assert!(!report.synced);
    assert!(render::table(&report, false).contains("istiod j: timeout"));
}

#[test]
fn json_schema_is_stable() {
    let syncs = model::from_client_configs(&[client_config("foo.a", &[(XdsType::Cds, 1, None)])], "{}", "i").unwrap();
    let report = model::build_report(&[], syncs, vec![], &Filter::default(), at(1_699_999_890));
    let doc: serde_json::Value = serde_json::from_str(&render::render(&report, render::Output::Json).unwrap()).unwrap();
    assert_eq!(
        doc["proxies"][0],
        json!({
            "name": "foo.a", "namespace": "a", "hasPod": false, "connected": true, "cluster": "cluster1",
            "istiod": "i", "version": "1.20",
            "xds": {
                "CDS": {"status": "SYNCED", "ageSeconds": 10},
                "LDS": {"status": "IGNORED", "ageSeconds": null},
                "EDS": {"status": "IGNORED", "ageSeconds": null},
                "RDS": {"status": "IGNORED", "ageSeconds": null},
                "ECDS": {"status": "IGNORED", "ageSeconds": null}
            }
        })
    );
    assert_eq!(doc["synced"], true);
    assert_eq!((&doc["apiVersion"], &doc["kind"]), (&json!("mesh.dev/v1alpha1"), &json!("ProxyStatus")));
    let yaml = render::render(&report, render::Output::Yaml).unwrap();
    assert!(yaml.contains("hasPod: false"), "{yaml}");
    assert!(yaml.starts_with("apiVersion: mesh.dev/v1alpha1\nkind: ProxyStatus\n"), "{yaml}");
}

#[test]
fn diff_compares_fields_and_names() {
    let envoy = json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
            {"cluster": {"name": "a", "type": "EDS", "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
                         "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": "a"}}},
            {"cluster": {"name": "extra", "connect_timeout": "1s"}}
        ]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": []},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": []}
    ]});
    let envoy = crate::config_dump::ConfigDump::parse(envoy.to_string().as_bytes()).unwrap();
    let envoy_side = diff::envoy_side(&envoy);
    let mut istiod_side = diff::Side::default();
    let a: BTreeMap<String, String> =
        [("type", "EDS"), ("connect_timeout", "10s"), ("lb_policy", "ROUND_ROBIN"), ("eds_service_name", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    istiod_side.clusters.insert("a".into(), a);
    istiod_side.clusters.insert("missing".into(), BTreeMap::new());
    let d = diff::diff(&istiod_side, &envoy_side);
    assert_eq!(d.clusters.missing_in_envoy, ["missing"]);
    assert_eq!(d.clusters.extra_in_envoy, ["extra"]);
    let changes = &d.clusters.changed["a"];
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].field.as_str(), changes[0].istiod.as_str(), changes[0].envoy.as_str()),
        ("lb_policy", "ROUND_ROBIN", "LEAST_REQUEST")
    );
    let text = diff::render(&d);
    assert!(
        text.contains("Clusters Don't Match") && text.contains("  - missing") && text.contains("  + extra"),
        "{text}"
    );
    assert!(text.contains("Listeners Match (0)"), "{text}");
    assert!(diff::istiod_side(&[0xff, 0x01]).is_err());
}

#[test]
fn flags_parse_with_clear_errors() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert!(parse_duration("3 weeks").unwrap_err().contains("\"3 weeks\""));
    assert_eq!(parse_pod("foo.bar", "x"), ("bar".to_string(), "foo".to_string()));
    assert_eq!(parse_pod("pod/foo", "x"), ("x".to_string(), "foo".to_string()));
}

#[test]
fn diff_document_carries_the_version_fields() {
    let d = diff::Diff::default();
    let text = super::diff_document(render::Output::Json, "foo.a", None, &d, &[]).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&doc["apiVersion"], &doc["kind"]), (&json!("mesh.dev/v1alpha1"), &json!("ProxyStatusDiff")));
    assert_eq!(doc["proxy"], "foo.a");
    let yaml = super::diff_document(render::Output::Yaml, "foo.a", None, &d, &[]).unwrap();
    assert!(yaml.starts_with("apiVersion: mesh.dev/v1alpha1\nkind: ProxyStatusDiff\nproxy: foo.a\n"), "{yaml}");
}
