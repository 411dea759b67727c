//! Discovery documents built from the registered types: `/api`, `/apis` (legacy and aggregated
//! `apidiscovery.k8s.io/v2`), `/api/v1`, `/apis/<group>`, `/apis/<group>/<version>`, and `/version`.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::resource::ResourceType;

/// `/version`, as the v1.36 server in the fixtures answers.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "emulationMajor": "1",
        "emulationMinor": "36",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "35",
        "gitVersion": "v1.36.2",
        "gitCommit": "98b35193b2ac7a23a673325f5e9b830ecd5ba406",
        "gitTreeState": "clean",
        "buildDate": "2026-11-21T13:59:51Z",
        "goVersion": "go1.27.3",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, others last by name.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn key(v: &str) -> (u8, i64, i64, String) {
        let Some(rest) = v.strip_prefix('v') else { return (3, 0, 0, v.to_string()) };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(major) = digits.parse::<i64>() else { return (3, 0, 0, v.to_string()) };
        let tail = &rest[digits.len()..];
        let (class, minor) = if tail.is_empty() {
            (0, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (1, n.parse::<i64>().unwrap_or(-1))
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n.parse::<i64>().unwrap_or(-1))
        } else {
            return (3, 0, 0, v.to_string());
        };
        (class, -major, -minor, String::new())
    }
    key(a).cmp(&key(b))
}

/// The groups (in registration order, core excluded) and their versions (by priority).
fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| compare_versions(a, b));
    }
    out
}

/// `/api` (legacy): `APIVersions`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let preferred = versions.first().map(String::as_str).unwrap_or("");
    json!({
        "name": group,
        "versions": versions.iter().map(|v| group_version(group, v)).collect::<Vec<_>>(),
        "preferredVersion": group_version(group, preferred),
    })
}

/// `/apis` (legacy): `APIGroupList`.
pub fn api_group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types).iter().map(|(g, vs)| api_group(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: `APIGroup`, or None when no type of the group is registered.
pub fn api_group_doc(types: &[ResourceType], group: &str) -> Option<Value> {
    let (g, vs) = groups(types).into_iter().find(|(g, _)| g == group)?;
    let mut doc = Map::new();
    doc.insert("kind".into(), json!("APIGroup"));
    doc.insert("apiVersion".into(), json!("v1"));
    if let Value::Object(m) = api_group(&g, &vs) {
        doc.extend(m);
    }
    Some(Value::Object(doc))
}

fn in_version<'a>(types: &'a [ResourceType], group: &str, version: &str) -> Vec<&'a ResourceType> {
    let mut v: Vec<&ResourceType> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if group.is_empty() || !v.iter().any(|t| t.custom) {
        v.sort_by(|a, b| a.plural.cmp(&b.plural));
    }
    v
}

/// `/api/v1` or `/apis/<group>/<version>`: `APIResourceList`, or None when nothing is served there.
pub fn api_resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served = in_version(types, group, version);
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in served {
        let mut r = Map::new();
        r.insert("name".into(), json!(t.plural));
        r.insert("singularName".into(), json!(t.singular));
        r.insert("namespaced".into(), json!(t.namespaced));
        r.insert("kind".into(), json!(t.kind));
        r.insert("verbs".into(), json!(t.verbs));
        if !t.short_names.is_empty() {
            r.insert("shortNames".into(), json!(t.short_names));
        }
        if !t.categories.is_empty() {
            r.insert("categories".into(), json!(t.categories));
        }
        resources.push(Value::Object(r));
        let mut subs = t.subresources.clone();
        subs.sort_by(|a, b| a.name.cmp(&b.name));
        for s in subs {
            resources.push(json!({
                "name": format!("{}/{}", t.plural, s.name),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            }));
        }
    }
    let mut doc = Map::new();
    doc.insert("kind".into(), json!("APIResourceList"));
    if group.is_empty() {
        doc.insert("groupVersion".into(), json!(version));
    } else {
        doc.insert("apiVersion".into(), json!("v1"));
        doc.insert("groupVersion".into(), json!(format!("{group}/{version}")));
    }
    doc.insert("resources".into(), json!(resources));
    Some(Value::Object(doc))
}

fn response_kind(t: &ResourceType, kind: &str) -> Value {
    if t.custom {
        json!({"group": t.group, "version": t.version, "kind": kind})
    } else {
        json!({"group": "", "version": "", "kind": kind})
    }
}

fn aggregated_versions(types: &[ResourceType], group: &str, versions: &[String]) -> Vec<Value> {
    versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = in_version(types, group, version)
                .into_iter()
                .map(|t| {
                    let mut r = Map::new();
                    r.insert("resource".into(), json!(t.plural));
                    r.insert("responseKind".into(), response_kind(t, &t.kind));
                    r.insert("scope".into(), json!(if t.namespaced { "Namespaced" } else { "Cluster" }));
                    r.insert("singularResource".into(), json!(t.singular));
                    r.insert("verbs".into(), json!(t.verbs));
                    if !t.short_names.is_empty() {
                        r.insert("shortNames".into(), json!(t.short_names));
                    }
                    if !t.categories.is_empty() {
                        r.insert("categories".into(), json!(t.categories));
                    }
                    if !t.subresources.is_empty() {
                        let mut subs = t.subresources.clone();
                        subs.sort_by(|a, b| a.name.cmp(&b.name));
                        let subs: Vec<Value> = subs
                            .iter()
                            .map(|s| json!({"subresource": s.name, "responseKind": response_kind(t, &s.kind), "verbs": s.verbs}))
                            .collect();
                        r.insert("subresources".into(), json!(subs));
                    }
                    Value::Object(r)
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect()
}

/// Aggregated discovery (`APIGroupDiscoveryList`) for `/api` (`core`) or `/apis` (all groups).
pub fn aggregated(types: &[ResourceType], core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({"metadata": {}, "versions": aggregated_versions(types, "", &["v1".to_string()])})]
    } else {
        groups(types)
            .iter()
            .map(|(g, vs)| json!({"metadata": {"name": g}, "versions": aggregated_versions(types, g, vs)}))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority_matches_kubernetes() {
        let mut v = vec!["v1alpha3", "v1beta1", "v1", "v2", "foo", "v2beta2"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, vec!["v2", "v1", "v2beta2", "v1beta1", "v1alpha3", "foo"]);
    }
}
