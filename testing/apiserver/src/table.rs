//! Server-side tables (`meta.k8s.io/v1` `Table`), what `kubectl get` asks for and prints.

use serde_json::{Value, json};

use super::meta;
use super::resource::ResourceType;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i64,
}

const fn col(name: &'static str, type_: &'static str, priority: i64) -> Column {
    Column { name, type_, format: "", priority }
}

const NAME: Column = Column { name: "Name", type_: "string", format: "name", priority: 0 };

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Array(a)) => a.iter().map(|x| s(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

fn or_none(text: String) -> Value {
    json!(if text.is_empty() { "<none>".to_string() } else { text })
}

fn created(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str)
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum();
    let mut reason = s(pod.pointer("/status/reason"));
    if reason.is_empty() {
        reason = s(pod.pointer("/status/phase"));
    }
    for c in statuses.iter().rev() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(r) = c.pointer("/state/terminated/reason").and_then(Value::as_str) {
            reason = r.to_string();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    let gates = pod.pointer("/spec/readinessGates").and_then(Value::as_array).map_or(0, Vec::len);
    vec![
        json!(format!("{ready}/{containers}")),
        json!(reason),
        json!(restarts),
        json!(meta::age(created(pod))),
        or_none(s(pod.pointer("/status/podIP"))),
        or_none(s(pod.pointer("/spec/nodeName"))),
        or_none(s(pod.pointer("/status/nominatedNodeName"))),
        json!(if gates == 0 { "<none>".to_string() } else { format!("0/{gates}") }),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let type_ = match s(svc.pointer("/spec/type")) {
        t if t.is_empty() => "ClusterIP".to_string(),
        t => t,
    };
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    let port = s(p.get("port"));
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let selector: Vec<String> = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(Some(v)))).collect())
        .unwrap_or_default();
    let mut external = s(svc.pointer("/spec/externalIPs"));
    if external.is_empty() && type_ == "LoadBalancer" {
        external = "<pending>".into();
    }
    vec![
        json!(type_),
        or_none(s(svc.pointer("/spec/clusterIP"))),
        or_none(external),
        or_none(ports.join(",")),
        json!(meta::age(created(svc))),
        or_none(selector.join(",")),
    ]
}

/// Reads a simple JSONPath (`.spec.hosts`, `.spec.selector.matchLabels`) from the object.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()) {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        cur = cur.get(field)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Columns and cells (after NAME) for one object of the type.
fn columns_and_cells(rt: &ResourceType, obj: &Value) -> (Vec<Column>, Vec<Value>) {
    if rt.custom && !rt.printer_columns.is_empty() {
        // A CRD's columns are owned strings: `column_definitions` describes them.
        return (Vec::new(), custom_cells(rt, obj));
    }
    let age = || json!(meta::age(created(obj)));
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => (
            vec![
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
                col("Nominated Node", "string", 1),
                col("Readiness Gates", "string", 1),
            ],
            pod_cells(obj),
        ),
        ("", "namespaces") => (
            vec![col("Status", "string", 0), col("Age", "string", 0)],
            vec![json!(s(obj.pointer("/status/phase"))), age()],
        ),
        ("", "services") => (
            vec![
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
                col("Selector", "string", 1),
            ],
            service_cells(obj),
        ),
        ("", "secrets") => (
            vec![col("Type", "string", 0), col("Data", "string", 0), col("Age", "string", 0)],
            vec![
                json!(s(obj.get("type"))),
                json!(obj.get("data").and_then(Value::as_object).map_or(0, serde_json::Map::len)),
                age(),
            ],
        ),
        ("", "configmaps") => (
            vec![col("Data", "string", 0), col("Age", "string", 0)],
            vec![json!(obj.get("data").and_then(Value::as_object).map_or(0, serde_json::Map::len)), age()],
        ),
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = obj
                .get("ports")
                .and_then(Value::as_array)
                .map(|ps| ps.iter().map(|p| s(p.get("port"))).collect())
                .unwrap_or_default();
            let addrs: Vec<String> = obj
                .get("endpoints")
                .and_then(Value::as_array)
                .map(|es| {
                    es.iter()
                        .flat_map(|e| e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default())
                        .map(|a| s(Some(&a)))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    col("AddressType", "string", 0),
                    col("Ports", "string", 0),
                    col("Endpoints", "string", 0),
                    col("Age", "string", 0),
                ],
                vec![json!(s(obj.get("addressType"))), or_none(ports.join(",")), or_none(addrs.join(",")), age()],
            )
        }
        ("", "nodes") => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")))
                .and_then(|c| c.get("status").and_then(Value::as_str))
                == Some("True");
            let roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).map(str::to_string).collect()
                })
                .unwrap_or_default();
            (
                vec![
                    col("Status", "string", 0),
                    col("Roles", "string", 0),
                    col("Age", "string", 0),
                    col("Version", "string", 0),
                ],
                vec![
                    json!(if ready { "Ready" } else { "NotReady" }),
                    or_none(roles.join(",")),
                    age(),
                    json!(s(obj.pointer("/status/nodeInfo/kubeletVersion"))),
                ],
            )
        }
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations" | "validatingwebhookconfigurations") => (
            vec![col("Webhooks", "integer", 0), col("Age", "string", 0)],
            vec![json!(obj.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len)), age()],
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![Column { name: "Created At", type_: "date", format: "", priority: 0 }],
            vec![json!(created(obj).unwrap_or(""))],
        ),
        ("apps", "deployments") => {
            let n = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            (
                vec![
                    col("Ready", "string", 0),
                    col("Up-to-date", "integer", 0),
                    col("Available", "integer", 0),
                    col("Age", "string", 0),
                ],
                vec![
                    json!(format!(
                        "{}/{}",
                        n("/status/readyReplicas"),
                        obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                    )),
                    json!(n("/status/updatedReplicas")),
                    json!(n("/status/availableReplicas")),
                    age(),
                ],
            )
        }
        _ => (vec![col("Age", "string", 0)], vec![age()]),
    }
}

fn custom_cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    rt.printer_columns
        .iter()
        .map(|c| {
            let v = json_path(obj, &c.json_path);
            match (c.type_.as_str(), v) {
                ("date", Some(Value::String(t))) => json!(meta::age(Some(t))),
                (_, None | Some(Value::Null)) => Value::Null,
                ("integer" | "number" | "boolean", Some(v)) => v.clone(),
                (_, Some(Value::String(t))) => json!(t),
                (_, Some(v)) => json!(v.to_string()),
            }
        })
        .collect()
}

fn column_definitions(rt: &ResourceType, sample: &Value) -> Vec<Value> {
    let name_def = json!({"name": NAME.name, "type": NAME.type_, "format": NAME.format,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": NAME.priority});
    let mut defs = vec![name_def];
    if rt.custom && !rt.printer_columns.is_empty() {
        defs.extend(rt.printer_columns.iter().map(|c| {
            json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority})
        }));
        return defs;
    }
    let (cols, _) = columns_and_cells(rt, sample);
    defs.extend(cols.iter().map(
        |c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.name, "priority": c.priority}),
    ));
    defs
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
           "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A `Table` of the objects (already presented for the requested version).
pub fn render(rt: &ResourceType, items: &[Value], resource_version: Option<u64>, include: IncludeObject) -> Value {
    let sample = items.first().cloned().unwrap_or(json!({}));
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""))];
            cells.extend(columns_and_cells(rt, obj).1);
            let mut row = serde_json::Map::new();
            row.insert("cells".into(), json!(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_metadata(obj));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata = match resource_version {
        Some(rv) => json!({"resourceVersion": rv.to_string()}),
        None => json!({}),
    };
    let mut doc = serde_json::Map::new();
    doc.insert("kind".into(), json!("Table"));
    doc.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    doc.insert("metadata".into(), metadata);
    doc.insert("columnDefinitions".into(), Value::Array(column_definitions(rt, &sample)));
    doc.insert("rows".into(), Value::Array(rows));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_rows_have_ready_status_restarts() {
        let rt = ResourceType::new("", "v1", "Pod", "pods", true);
        let pod = json!({"metadata": {"name": "foo"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
        let t = render(&rt, &[pod], Some(5), IncludeObject::Metadata);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], json!("foo"));
        assert_eq!(cells[1], json!("1/2"));
        assert_eq!(cells[2], json!("Running"));
        assert_eq!(cells[3], json!(3));
        assert_eq!(cells[5], json!("10.0.0.1"));
        assert_eq!(t["columnDefinitions"][1]["name"], json!("Ready"));
    }
}
