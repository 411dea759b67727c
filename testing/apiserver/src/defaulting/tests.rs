use serde_json::json;

use super::*;

fn fixture(name: &str) -> anyhow::Result<Value> {
    let path = mesh_test_data::shared_dir()?.join("fixtures/kube-apiserver").join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn review_object(name: &str) -> anyhow::Result<Value> {
    Ok(fixture(name)?["request"]["object"].clone())
}

/// Every object's keys in reverse order, as a webhook may write them (`managedFields`, which the
/// server keeps as it was written, as it is).
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), if k == "managedFields" { v.clone() } else { reversed(v) }))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

fn remove(v: &mut Value, pointer: &str, keys: &[&str]) {
    if let Some(m) = v.pointer_mut(pointer).and_then(Value::as_object_mut) {
        for key in keys {
            m.shift_remove(*key);
        }
    }
}

/// The pods the real server sent to a webhook were decoded and defaulted already: decoding them
/// again changes nothing, byte for byte.
#[test]
fn the_real_servers_reviews_are_a_fixed_point() -> anyhow::Result<()> {
    for name in ["admissionreview-v1-pod-foo.json", "admissionreview-v1-pod-generatename-owner.json"] {
        let pod = review_object(name)?;
        assert_eq!(decoded_pod(&pod).to_string(), pod.to_string(), "{name}");
    }
    Ok(())
}

/// The capture's webhook added the label `verify-webhook: called` to pod foo; the pod the real
/// server stored is the review's object with the label, decoded: labels sorted, the rest as it was.
/// (The fields the registry sets after admission are left out of the comparison.)
#[test]
fn a_patched_pod_reads_as_the_real_server_stored_it() -> anyhow::Result<()> {
    let mut patched = review_object("admissionreview-v1-pod-foo.json")?;
    patched["metadata"]["labels"]["verify-webhook"] = json!("called");
    let mut ours = decoded_pod(&patched);
    let mut stored = fixture("podlist-foo.json")?["items"][0].clone();
    for pod in [&mut ours, &mut stored] {
        remove(pod, "/metadata", &["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"]);
        remove(pod, "", &["kind", "apiVersion", "status"]);
    }
    assert_eq!(ours.to_string(), stored.to_string());
    Ok(())
}

/// The real server's review with every default taken out and every object's keys reversed decodes
/// to the real server's review, byte for byte: the defaults and the field order of the Go types.
#[test]
fn defaults_and_field_order_are_the_real_servers() -> anyhow::Result<()> {
    for name in ["admissionreview-v1-pod-foo.json", "admissionreview-v1-pod-generatename-owner.json"] {
        let real = review_object(name)?;
        let mut bare = real.clone();
        remove(
            &mut bare,
            "/spec",
            &["restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy", "securityContext", "schedulerName"],
        );
        remove(&mut bare, "/spec", &["enableServiceLinks"]);
        remove(&mut bare, "/spec/volumes/0/projected", &["defaultMode"]);
        remove(&mut bare, "/spec/volumes/0/projected/sources/2/downwardAPI/items/0/fieldRef", &["apiVersion"]);
        for list in ["initContainers", "containers"] {
            let count = real["spec"].get(list).and_then(Value::as_array).map_or(0, Vec::len);
            for i in 0..count {
                let c = format!("/spec/{list}/{i}");
                remove(&mut bare, &c, &["terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy"]);
                remove(&mut bare, &c, &["resources"]);
                remove(&mut bare, &format!("{c}/ports/0"), &["protocol"]);
                remove(&mut bare, &format!("{c}/readinessProbe"), &["timeoutSeconds", "successThreshold"]);
                remove(&mut bare, &format!("{c}/readinessProbe"), &["failureThreshold"]);
                remove(&mut bare, &format!("{c}/readinessProbe/httpGet"), &["scheme"]);
            }
        }
        assert_ne!(bare, real, "{name}: defaults were taken out");
        assert_eq!(decoded_pod(&reversed(&bare)).to_string(), real.to_string(), "{name}");
    }
    Ok(())
}

/// The parts a sidecar injector writes, as a webhook's patch leaves them, and as the server
/// re-encodes them (`pkg/apis/core/v1/defaults.go`).
#[test]
fn injected_parts_get_the_defaults() {
    let pod = json!({
        "metadata": {"annotations": {"z": "1", "a": "2"}, "labels": {"b": "1", "a": "2"}, "name": "p"},
        "spec": {
            "containers": [{
                "unknownField": "kept",
                "readinessProbe": {"httpGet": {"port": 15021, "path": "/healthz/ready"}, "periodSeconds": 15,
                                   "initialDelaySeconds": 0, "timeoutSeconds": 3},
                "startupProbe": {"httpGet": {"port": "http"}},
                "livenessProbe": {"grpc": {"port": 9090}},
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}, {"containerPort": 53, "protocol": "UDP"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "EMPTY", "value": ""},
                ],
                "volumeMounts": [{"mountPath": "/etc/istio/proxy", "name": "istio-envoy", "readOnly": false}],
                "resources": {"limits": {"memory": "1024Mi", "cpu": "2000m"}, "requests": {"cpu": 0.1}},
                "image": "proxyv2:latest",
                "name": "istio-proxy",
                "args": [],
            }],
            "initContainers": [
                {"name": "no-tag", "image": "registry:5000/proxyv2"},
                {"name": "digest", "image": "proxyv2@sha256:abcd"},
                {"name": "tagged", "image": "proxyv2:1.28.0", "resources": {"limits": {"cpu": "1"}}},
            ],
            "volumes": [
                {"name": "istio-envoy", "emptyDir": {"sizeLimit": "1024Mi", "medium": "Memory"}},
                {"name": "scratch"},
                {"name": "istio-podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "istio-token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "istio-token", "audience": "istio-ca"}}]}},
                {"name": "ca", "configMap": {"name": "istio-ca-root-cert"}},
                {"name": "certs", "secret": {"secretName": "certs", "defaultMode": 256}},
                {"name": "host", "hostPath": {"path": "/var/run"}},
            ],
        },
    });
    let spec = json!({
        "volumes": [
            {"name": "istio-envoy", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "istio-podinfo", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}],
                "defaultMode": 420}},
            {"name": "istio-token", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 3600, "path": "istio-token"}}],
                "defaultMode": 420}},
            {"name": "ca", "configMap": {"name": "istio-ca-root-cert", "defaultMode": 420}},
            {"name": "certs", "secret": {"secretName": "certs", "defaultMode": 256}},
            {"name": "host", "hostPath": {"path": "/var/run", "type": ""}},
        ],
        "initContainers": [
            {"name": "no-tag", "image": "registry:5000/proxyv2", "resources": {},
             "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
             "imagePullPolicy": "Always"},
            {"name": "digest", "image": "proxyv2@sha256:abcd", "resources": {},
             "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
             "imagePullPolicy": "IfNotPresent"},
            {"name": "tagged", "image": "proxyv2:1.28.0", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
             "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
             "imagePullPolicy": "IfNotPresent"},
        ],
        "containers": [{
            "name": "istio-proxy",
            "image": "proxyv2:latest",
            "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
                      {"containerPort": 53, "protocol": "UDP"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}}},
                {"name": "EMPTY"},
            ],
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "1Gi"}},
            "volumeMounts": [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}],
            "livenessProbe": {"grpc": {"port": 9090, "service": ""}, "timeoutSeconds": 1, "periodSeconds": 10,
                              "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                               "timeoutSeconds": 3, "periodSeconds": 15, "successThreshold": 1, "failureThreshold": 3},
            "startupProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"},
                             "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "Always",
            "unknownField": "kept",
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": true,
    });
    let want = json!({
        "metadata": {"name": "p", "labels": {"a": "2", "b": "1"}, "annotations": {"a": "2", "z": "1"}},
        "spec": spec,
        "status": {},
    });
    let got = decoded_pod(&pod);
    assert_eq!(got.to_string(), want.to_string());
    assert_eq!(decoded_pod(&got).to_string(), got.to_string(), "decoding again changes nothing");
}

#[test]
fn host_network_ports_are_host_ports() {
    let pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "a:1",
        "ports": [{"containerPort": 8080}, {"containerPort": 9090, "hostPort": 9091}]}]}});
    let got = decoded_pod(&pod);
    let ports = &got["spec"]["containers"][0]["ports"];
    assert_eq!(
        ports,
        &json!([{"hostPort": 8080, "containerPort": 8080, "protocol": "TCP"},
                              {"hostPort": 9091, "containerPort": 9090, "protocol": "TCP"}])
    );
}
