//! The test discovery server against a real Envoy: the classic walkthrough scenario is ACKed and shows
//! up in Envoy's config dump with Istio's names and shapes; istiod's debug API reports it; a bad push
//! is NACKed with Envoy's own message; held responses make a proxy STALE.

use std::net::Ipv4Addr;
use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::{ClustersConfigDump, ConfigDump, RoutesConfigDump};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{ClientConfig, ConfigStatus};
use mesh_tests::sidecar::{Sidecar, SidecarSpec};
use mesh_tests::xds::state::{CLUSTER_TYPE, DEBUG_CONFIG_DUMP_TYPE, DEBUG_SYNCZ_TYPE, ENDPOINT_TYPE};
use mesh_tests::xds::{DiscoveryServer, Scenario};
use prost::Message;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
const BAR: &str = "bar-service.bar-namespace.svc.cluster.local";

fn section<'a>(dump: &'a Value, ty: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["@type"] == format!("type.googleapis.com/envoy.admin.v3.{ty}")))
        .unwrap_or_else(|| panic!("{ty} missing from config dump"))
}

async fn start_foo() -> anyhow::Result<(DiscoveryServer, Sidecar)> {
    let server = DiscoveryServer::start(Scenario::classic()).await?;
    let sidecar =
        Sidecar::start(SidecarSpec::new("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)), server.xds_addr())?;
    sidecar.wait_ready(TIMEOUT).await?;
    server.wait_synced("foo.foo-namespace", TIMEOUT).await?;
    Ok((server, sidecar))
}

/// Asks the server's ADS port for an istiod debug type, like istioctl does; returns the payloads.
async fn debug_xds(server: &DiscoveryServer, type_url: &str, names: Vec<String>) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.xds_addr())).await?;
    let req = DiscoveryRequest { type_url: type_url.to_string(), resource_names: names, ..Default::default() };
    let mut stream = client.stream_aggregated_resources(futures::stream::iter(vec![req])).await?.into_inner();
    let resp = tokio::time::timeout(TIMEOUT, stream.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("the debug stream closed without an answer"))?;
    let identifier: Value = serde_json::from_str(&resp.control_plane.unwrap_or_default().identifier)?;
    anyhow::ensure!(identifier["ID"] == "istiod-test", "control plane identifier: {identifier}");
    Ok(resp.resources.into_iter().map(|a| a.value).collect())
}

#[tokio::test]
async fn classic_walkthrough_is_acked_with_istio_names_and_shapes() {
    let (server, sidecar) = start_foo().await.unwrap();
    let dump = sidecar.config_dump("?include_eds").await.unwrap();

    let listeners = section(&dump, "ListenersConfigDump");
    let names: Vec<&str> = listeners["dynamic_listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("active_state").is_some())
        .filter_map(|l| l["name"].as_str())
        .collect();
    for want in ["0.0.0.0_50002", "0.0.0.0_8080", "10.96.0.3_9000", "virtualOutbound", "virtualInbound"] {
        assert!(names.contains(&want), "listener {want} not active in Envoy: {names:?}");
    }
    let vo =
        listeners["dynamic_listeners"].as_array().unwrap().iter().find(|l| l["name"] == "virtualOutbound").unwrap();
    assert_eq!(vo["active_state"]["listener"]["use_original_dst"], true);
    assert_eq!(vo["active_state"]["listener"]["address"]["socket_address"]["port_value"], 15001);
    let l50002 =
        listeners["dynamic_listeners"].as_array().unwrap().iter().find(|l| l["name"] == "0.0.0.0_50002").unwrap();
    let hcm = &l50002["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["rds"]["route_config_name"], "50002");
    let vi = listeners["dynamic_listeners"].as_array().unwrap().iter().find(|l| l["name"] == "virtualInbound").unwrap();
    let chains: Vec<&str> = vi["active_state"]["listener"]["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(chains.contains(&"0.0.0.0_8080") && chains.contains(&"0.0.0.0_9000"), "inbound chains: {chains:?}");

    let routes = section(&dump, "RoutesConfigDump");
    let r50002 = routes["dynamic_route_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["route_config"])
        .find(|r| r["name"] == "50002")
        .expect("route 50002");
    let vhost = r50002["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == format!("{BAR}:50002"))
        .expect("virtual host bar-service.bar-namespace.svc.cluster.local:50002");
    assert_eq!(vhost["routes"][0]["route"]["cluster"], format!("outbound|50002|v1|{BAR}"));
    assert_eq!(
        vhost["routes"][0]["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking.istio.io/v1/namespaces/bar-namespace/virtual-service/bar-vs"
    );

    let clusters = section(&dump, "ClustersConfigDump");
    let active: Vec<&Value> =
        clusters["dynamic_active_clusters"].as_array().unwrap().iter().map(|c| &c["cluster"]).collect();
    let v1 = active.iter().find(|c| c["name"] == format!("outbound|50002|v1|{BAR}")).expect("subset cluster");
    assert_eq!(v1["type"], "EDS");
    assert_eq!(
        v1["metadata"]["filter_metadata"]["istio"]["config"],
        "/apis/networking.istio.io/v1/namespaces/bar-namespace/destination-rule/bar-dr"
    );
    for want in ["inbound|8080||", "PassthroughCluster", "BlackHoleCluster", "InboundPassthroughCluster"] {
        assert!(active.iter().any(|c| c["name"] == want), "cluster {want} not active");
    }

    let eds = section(&dump, "EndpointsConfigDump");
    let cla = eds["dynamic_endpoint_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["endpoint_config"])
        .find(|e| e["cluster_name"] == format!("outbound|50002|v1|{BAR}"))
        .expect("endpoints of the v1 subset");
    let locality = &cla["endpoints"][0];
    assert_eq!(locality["locality"]["zone"], "us-east1-b");
    let ips: Vec<&str> = locality["lb_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["endpoint"]["address"]["socket_address"]["address"].as_str())
        .collect();
    assert_eq!(ips, ["11.0.0.1", "11.0.0.2", "11.0.0.3"]);
    let first = &locality["lb_endpoints"][0];
    assert_eq!(first["metadata"]["filter_metadata"]["envoy.transport_socket_match"]["tlsMode"], "istio");
    assert_eq!(first["load_balancing_weight"], 1);

    // istiod's view says SYNCED for every type Envoy watches, and records the node metadata.
    let proxy = server.proxy("foo.foo-namespace").unwrap();
    assert_eq!(proxy.metadata["CLUSTER_ID"], "Kubernetes");
    assert!(!proxy.watches[ENDPOINT_TYPE].names.is_empty(), "EDS is requested by name");
}

#[tokio::test]
async fn debug_api_reports_sync_status_over_http_and_xds() {
    let (server, _foo) = start_foo().await.unwrap();

    let body: Value = reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .unwrap()
        .get(format!("http://{}/debug/syncz", server.debug_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = body.as_array().unwrap().iter().find(|e| e["proxy"] == "foo.foo-namespace").expect("foo in syncz");
    assert_eq!(entry["cluster_id"], "Kubernetes");
    assert!(!entry["cluster_sent"].as_str().unwrap().is_empty());
    assert_eq!(entry["cluster_sent"], entry["cluster_acked"]);
    assert_eq!(entry["resources"][CLUSTER_TYPE]["sent"], entry["resources"][CLUSTER_TYPE]["acked"]);

    let resources = debug_xds(&server, DEBUG_SYNCZ_TYPE, Vec::new()).await.unwrap();
    assert_eq!(resources.len(), 1, "only the sidecar, not the debug client, is a proxy");
    let cc = ClientConfig::decode(resources[0].as_slice()).unwrap();
    assert_eq!(cc.node.as_ref().unwrap().id, "foo.foo-namespace");
    let statuses: Vec<(String, i32)> =
        cc.generic_xds_configs.iter().map(|g| (g.type_url.clone(), g.config_status)).collect();
    assert_eq!(statuses.len(), 5);
    for (type_url, status) in &statuses {
        let want =
            if type_url.ends_with("TypedExtensionConfig") { ConfigStatus::Unknown } else { ConfigStatus::Synced };
        assert_eq!(*status, want as i32, "{type_url}");
    }

    // istiod's config dump for the proxy holds the clusters and routes it would send.
    let resources = debug_xds(&server, DEBUG_CONFIG_DUMP_TYPE, vec!["foo.foo-namespace".into()]).await.unwrap();
    let dump = ConfigDump::decode(resources[0].as_slice()).unwrap();
    let clusters = ClustersConfigDump::decode(dump.configs[0].value.as_slice()).unwrap();
    let names: Vec<String> = clusters
        .dynamic_active_clusters
        .iter()
        .map(|c| Cluster::decode(c.cluster.as_ref().unwrap().value.as_slice()).unwrap().name)
        .collect();
    assert!(names.contains(&format!("outbound|50002|v1|{BAR}")), "{names:?}");
    let routes = RoutesConfigDump::decode(dump.configs[2].value.as_slice()).unwrap();
    let route_names: Vec<String> = routes
        .dynamic_route_configs
        .iter()
        .map(|r| RouteConfiguration::decode(r.route_config.as_ref().unwrap().value.as_slice()).unwrap().name)
        .collect();
    assert!(route_names.contains(&"50002".to_string()));
    assert!(debug_xds(&server, DEBUG_CONFIG_DUMP_TYPE, vec!["nobody.nowhere".into()]).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_push_is_nacked_with_envoys_message_then_recovers() {
    let (server, sidecar) = start_foo().await.unwrap();
    server.push_invalid_cluster("outbound|1|bad|broken.example");
    let proxy = server
        .wait_for("foo.foo-namespace", "NACKing CDS", TIMEOUT, |p| {
            p.watches.get(CLUSTER_TYPE).is_some_and(|w| w.status() == ConfigStatus::Error)
        })
        .await
        .unwrap();
    let err = &proxy.watches[CLUSTER_TYPE].last_error;
    // Envoy's own validation message, verbatim.
    assert!(err.contains("duration"), "NACK detail should be Envoy's message: {err}");
    // Envoy kept the previous, good clusters.
    let dump = sidecar.config_dump("").await.unwrap();
    let clusters = section(&dump, "ClustersConfigDump");
    assert!(
        !clusters["dynamic_active_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cluster"]["name"] == "outbound|1|bad|broken.example")
    );

    server.clear_invalid_cluster();
    server.wait_synced("foo.foo-namespace", TIMEOUT).await.unwrap();
    assert!(server.proxy("foo.foo-namespace").unwrap().watches[CLUSTER_TYPE].last_error.is_empty());
}

#[tokio::test]
async fn held_responses_leave_the_proxy_stale_until_released() {
    let (server, sidecar) = start_foo().await.unwrap();
    server.hold("foo.foo-namespace", CLUSTER_TYPE);
    server.update(|s| {
        let mut svc = s.services[0].clone();
        svc.name = "baz-service".into();
        svc.vip = Ipv4Addr::new(10, 96, 0, 9);
        s.services.push(svc);
    });
    let proxy = server
        .wait_for("foo.foo-namespace", "STALE on CDS", TIMEOUT, |p| {
            p.watches.get(CLUSTER_TYPE).is_some_and(|w| w.status() == ConfigStatus::Stale)
        })
        .await
        .unwrap();
    let w = &proxy.watches[CLUSTER_TYPE];
    assert_ne!(w.nonce_sent, w.nonce_acked);

    server.release("foo.foo-namespace", CLUSTER_TYPE);
    server.wait_synced("foo.foo-namespace", TIMEOUT).await.unwrap();
    let dump = sidecar.config_dump("").await.unwrap();
    let clusters = section(&dump, "ClustersConfigDump");
    assert!(
        clusters["dynamic_active_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cluster"]["name"] == "outbound|50002||baz-service.bar-namespace.svc.cluster.local"),
        "the released push arrived"
    );
}
