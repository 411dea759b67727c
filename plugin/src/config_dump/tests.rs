use super::*;

fn fixture(name: &str) -> Vec<u8> {
    mesh_test_data::read_shared(&format!("fixtures/envoy-config-dumps/{name}")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn parses_the_bookinfo_dump() {
    let dump = ConfigDump::parse(&fixture("bookinfo-1.5-productpage-config-dump.json")).unwrap();
    let node = dump.node.as_ref().unwrap();
    assert!(node.id.starts_with("sidecar~"), "{}", node.id);
    assert!(dump.listeners.iter().any(|l| l.name == "virtualOutbound"));
    assert!(dump.listeners.iter().any(|l| l.name == "virtualInbound"));
    let index = dump.index();
    let rc = index.route_configs.get("9080").expect("route config 9080");
    assert!(rc.virtual_hosts.iter().any(|vh| vh.domains.iter().any(|d| d.starts_with("reviews.default"))));
    assert!(index.clusters.contains_key("outbound|9080||reviews.default.svc.cluster.local"));
    // Istio 1.5 wrote filter configs in `config`: the terminal filters are still found.
    let vo = index.listeners["virtualOutbound"];
    assert!(vo.use_original_dst.unwrap_or(false));
    let http = dump
        .listeners
        .iter()
        .filter_map(|l| l.config.as_ref())
        .flat_map(|l| &l.filter_chains)
        .filter(|c| matches!(c.terminal(), Some(Terminal::Http(_))))
        .count();
    assert!(http > 3, "{http} HTTP chains");
    assert!(!dump.secrets.is_empty());
}

#[test]
fn parses_yaml_like_json() {
    let dump = ConfigDump::parse(&fixture("istioctl-authz-sidecar-listeners.yaml")).unwrap();
    assert!(dump.listeners.len() > 20, "{}", dump.listeners.len());
    assert!(dump.listeners.iter().any(|l| l.name == "virtualInbound"));
    let vi = dump.index().listeners["virtualInbound"];
    assert!(
        vi.filter_chains
            .iter()
            .any(|c| { c.filter_chain_match.as_ref().is_some_and(|m| m.transport_protocol == "tls") })
    );
}

#[test]
fn parses_eds_and_metadata() {
    let dump = ConfigDump::parse(&fixture("istioctl-endpoint-configdump.json")).unwrap();
    assert!(dump.has_endpoints_section);
    assert!(dump.endpoints.len() >= 30, "{}", dump.endpoints.len());
    let with_workload = dump
        .endpoints
        .iter()
        .filter_map(|e| e.config.as_ref())
        .flat_map(|e| &e.endpoints)
        .flat_map(|l| &l.lb_endpoints)
        .filter(|e| e.metadata.as_ref().and_then(Metadata::istio_workload).is_some())
        .count();
    assert!(with_workload > 0);
}

#[test]
fn reports_warming_and_rejected_resources() {
    let text = r#"{"configs":[
      {"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[
        {"name":"bad","error_state":{"details":"duplicate domain","last_update_attempt":"2026-01-01T00:00:00Z"}},
        {"name":"0.0.0.0_80","warming_state":{"version_info":"3","listener":{"name":"0.0.0.0_80"}}}
      ]},
      {"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","dynamic_warming_clusters":[
        {"version_info":"2","cluster":{"name":"outbound|80||a.b.svc.cluster.local","type":"EDS"}}
      ]}]}"#;
    let dump = ConfigDump::parse(text.as_bytes()).unwrap();
    let problems = dump.problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(problems[0].state, ResourceState::Rejected);
    assert_eq!(problems[0].details.as_deref(), Some("duplicate domain"));
    assert_eq!(problems[1].state, ResourceState::Warming);
    assert_eq!(problems[2].kind, "cluster");
    assert!(dump.index().listeners.is_empty(), "warming listeners are not usable");
}

#[test]
fn bad_input_names_the_problem() {
    let err = ConfigDump::parse(b"{\"configs\": 3}").unwrap_err().to_string();
    assert!(err.contains("invalid type"), "{err}");
    let err = ConfigDump::parse(b"{}").unwrap_err().to_string();
    assert!(err.contains("no \"configs\""), "{err}");
    let err = ConfigDump::parse(b"configs: [ {").unwrap_err().to_string();
    assert!(err.contains("YAML"), "{err}");
    let err = ConfigDump::parse(
        br#"{"configs":[{"static_listeners":[{"listener":{"address":{"socket_address":{"port_value":"x"}}}}]}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"x\" is not a number"), "{err}");
}

#[test]
fn reader_and_slice_agree() {
    for name in ["istioctl-endpoint-configdump.json", "istioctl-authz-sidecar-listeners.yaml"] {
        let bytes = fixture(name);
        let from_slice = ConfigDump::parse(&bytes).unwrap();
        let from_reader = ConfigDump::from_reader(&bytes[..]).unwrap();
        assert_eq!(from_slice, from_reader, "{name}");
    }
    let err = ConfigDump::from_reader(&b"  {\"configs\": [}"[..]).unwrap_err().to_string();
    assert!(err.contains("JSON"), "{err}");
}
