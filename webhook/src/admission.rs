//! AdmissionReview in and out: parse the API server's request, build the response. Pure, no I/O.
//!
//! kube-core's `AdmissionResponse` serialises the patch as an array of numbers; the API server wants
//! base64 text, so the response is written with the small types here.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The AdmissionReview API versions the webhook answers (the response echoes the request's).
pub const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a request body is not a usable AdmissionReview (answered with 400 and this message).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The body is not JSON, or not an object of the AdmissionReview shape.
    #[error("malformed AdmissionReview JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `kind` is present but is not `AdmissionReview`.
    #[error("kind {0:?} is not AdmissionReview")]
    Kind(String),
    /// `apiVersion` is not one of [`API_VERSIONS`].
    #[error("apiVersion {0:?} is not supported (use admission.k8s.io/v1)")]
    ApiVersion(String),
    /// The review has no `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// The request has no `uid` (or an empty one).
    #[error("AdmissionReview request has no uid")]
    NoUid,
    /// The request has no `object` (or it is null).
    #[error("AdmissionReview request {uid} has no object")]
    NoObject {
        /// The request's uid.
        uid: String,
    },
}

#[derive(Deserialize)]
struct WireReview {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<WireRequest>,
}

#[derive(Deserialize)]
struct WireRequest {
    uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<Pruned>,
}

/// A JSON value parsed with `metadata.managedFields` skipped rather than built and then dropped:
/// managedFields never affect injection and are often a third of a pod (Istio drops them too).
struct Pruned(Value);

impl<'de> Deserialize<'de> for Pruned {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PruneVisitor { metadata: false }).map(Pruned)
    }
}

/// Builds a [`Value`] as serde_json does, leaving out `managedFields` when `metadata` is set (the
/// object's `metadata` map) and visiting the top-level `metadata` member that way.
struct PruneVisitor {
    metadata: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for PruneVisitor {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PruneVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = serde_json::Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if self.metadata && key == "managedFields" {
                access.next_value::<serde::de::IgnoredAny>()?;
            } else if !self.metadata && key == "metadata" {
                let value = access.next_value_seed(PruneVisitor { metadata: true })?;
                map.insert(key, value);
            } else {
                let value = access.next_value::<Value>()?;
                map.insert(key, value);
            }
        }
        Ok(Value::Object(map))
    }
}

/// The parts of an AdmissionReview request the webhook uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRequest {
    /// The review's apiVersion, echoed in the response.
    pub api_version: String,
    /// The request uid, echoed in the response.
    pub uid: String,
    /// The request's namespace (empty when the API server sent none).
    pub namespace: String,
    /// The object's name: `request.name`, else `metadata.name`, else `metadata.generateName`.
    pub name: String,
    /// The object under review (a pod), with `metadata.managedFields` removed as Istio does.
    pub object: Value,
}

/// Parses an AdmissionReview body.
pub fn parse_review(body: &[u8]) -> Result<ReviewRequest, AdmissionError> {
    let review: WireReview = serde_json::from_slice(body)?;
    if let Some(kind) = review.kind
        && kind != "AdmissionReview"
    {
        return Err(AdmissionError::Kind(kind));
    }
    let api_version = review.api_version.unwrap_or_else(|| API_VERSIONS[0].to_string());
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(AdmissionError::ApiVersion(api_version));
    }
    let request = review.request.ok_or(AdmissionError::NoRequest)?;
    let uid = request.uid.filter(|u| !u.is_empty()).ok_or(AdmissionError::NoUid)?;
    // managedFields were skipped while parsing (see [`Pruned`]).
    let object = match request.object {
        Some(Pruned(Value::Null)) | None => return Err(AdmissionError::NoObject { uid }),
        Some(Pruned(object)) => object,
    };
    let meta_str = |key: &str| object.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("");
    let name = match request.name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None if !meta_str("name").is_empty() => meta_str("name").to_string(),
        None => meta_str("generateName").to_string(),
    };
    Ok(ReviewRequest { api_version, uid, namespace: request.namespace.unwrap_or_default(), name, object })
}

/// What the webhook answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed, unchanged.
    Allow,
    /// Allowed with this JSON Patch.
    Patch(json_patch::Patch),
    /// Refused with this message.
    Deny(String),
}

#[derive(Serialize)]
struct OutReview<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: OutResponse<'a>,
}

#[derive(Serialize)]
struct OutResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<OutStatus<'a>>,
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[derive(Serialize)]
struct OutStatus<'a> {
    message: &'a str,
}

/// Serialises the AdmissionReview response for `api_version`/`uid`: the patch is base64 text with
/// `patchType: JSONPatch`; a denial carries `allowed: false` and the message.
pub fn render_response(api_version: &str, uid: &str, verdict: &Verdict) -> Result<Vec<u8>, serde_json::Error> {
    let (allowed, status) = match verdict {
        Verdict::Allow => (true, None),
        Verdict::Patch(patch) => return render_patch_response(api_version, uid, patch),
        Verdict::Deny(message) => (false, Some(OutStatus { message })),
    };
    serde_json::to_vec(&OutReview {
        api_version,
        kind: "AdmissionReview",
        response: OutResponse { uid, allowed, status, patch_type: None, patch: None },
    })
}

/// The response with a patch, written directly: the base64 text goes into the output as it is
/// encoded (it never needs JSON escaping), the same bytes [`OutReview`] would serialise to.
fn render_patch_response(
    api_version: &str,
    uid: &str,
    patch: &json_patch::Patch,
) -> Result<Vec<u8>, serde_json::Error> {
    let patch = serde_json::to_vec(patch)?;
    let mut out = Vec::with_capacity(patch.len().div_ceil(3) * 4 + api_version.len() + uid.len() + 128);
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version)?;
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut out, uid)?;
    out.extend_from_slice(b",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
    let start = out.len();
    let encoded_len = base64::encoded_len(patch.len(), true).ok_or_else(|| {
        <serde_json::Error as serde::ser::Error>::custom(format!(
            "a patch of {} bytes is too large to encode",
            patch.len()
        ))
    })?;
    out.resize(start + encoded_len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(&patch, &mut out[start..])
        .map_err(|e| <serde_json::Error as serde::ser::Error>::custom(format!("base64 of the patch: {e}")))?;
    out.truncate(start + written);
    out.extend_from_slice(b"\"}}");
    Ok(out)
}

/// The proxy location given by the request path `/inject/cluster/<c>/net/<n>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectTarget {
    /// Cluster id (`ISTIO_META_CLUSTER_ID`), overriding the config's.
    pub cluster: Option<String>,
    /// Network (`ISTIO_META_NETWORK`), overriding the config's.
    pub network: Option<String>,
}

/// Why a path under `/inject/` is not understood (answered with 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A key without a value, e.g. `/inject/cluster`.
    #[error("path /inject/{0}: key {1:?} has no value (use /inject/cluster/<cluster>/net/<network>)")]
    MissingValue(String, String),
    /// A key other than `cluster` and `net`.
    #[error("path /inject/{0}: unknown key {1:?} (use /inject/cluster/<cluster>/net/<network>)")]
    UnknownKey(String, String),
}

/// Parses the part of the path after `/inject/`: `key/value` pairs with keys `cluster` and `net`.
pub fn parse_inject_path(rest: &str) -> Result<InjectTarget, PathError> {
    let mut target = InjectTarget::default();
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    while let Some(key) = parts.next() {
        let value = parts.next().ok_or_else(|| PathError::MissingValue(rest.to_string(), key.to_string()))?;
        match key {
            "cluster" => target.cluster = Some(value.to_string()),
            "net" => target.network = Some(value.to_string()),
            other => return Err(PathError::UnknownKey(rest.to_string(), other.to_string())),
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_parse_as_serde_json_values_without_managed_fields() {
        let objects = [
            json!({"metadata": {"name": "p", "managedFields": [{"manager": "kubectl"}], "labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}], "x": [1.5, -2, null, true]}]},
                "status": {}}),
            json!({"metadata": {"managedFields": null}}),
            json!({"metadata": "not a map", "managedFields": [1]}),
            json!({"spec": {"metadata": {"managedFields": [2]}}}),
            json!([1, {"metadata": {"managedFields": [3]}}]),
            json!(12),
            json!("text"),
            json!(18446744073709551615u64),
        ];
        for object in objects {
            let review = json!({"request": {"uid": "u", "object": object}});
            let parsed = parse_review(review.to_string().as_bytes()).unwrap();
            let mut want = object.clone();
            if let Some(meta) = want.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            assert_eq!(parsed.object, want);
            assert_eq!(parsed.object.to_string(), want.to_string(), "member order kept");
        }
    }

    #[test]
    fn patch_response_is_what_the_serde_types_write() {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "x\"y\u{e9}\n"},
            {"op": "remove", "path": "/spec/containers/0"}
        ]))
        .unwrap();
        for (api_version, uid) in [("admission.k8s.io/v1", "u-1"), ("admission.k8s.io/v1beta1", "quote\"and\\slash")] {
            let want = serde_json::to_vec(&OutReview {
                api_version,
                kind: "AdmissionReview",
                response: OutResponse {
                    uid,
                    allowed: true,
                    status: None,
                    patch_type: Some("JSONPatch"),
                    patch: Some(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&patch).unwrap())),
                },
            })
            .unwrap();
            let got = render_response(api_version, uid, &Verdict::Patch(patch.clone())).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn parses_a_review_and_drops_managed_fields() {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "namespace": "foo", "object": {"metadata": {"generateName": "web-", "managedFields": [1]}}}});
        let req = parse_review(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!((req.uid.as_str(), req.namespace.as_str(), req.name.as_str()), ("u1", "foo", "web-"));
        assert_eq!(req.object, json!({"metadata": {"generateName": "web-"}}));
    }

    #[test]
    fn bad_reviews_are_named() {
        let err = |v: Value| parse_review(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
        assert!(parse_review(b"{").unwrap_err().to_string().starts_with("malformed AdmissionReview JSON"));
        assert_eq!(err(json!({"kind": "AdmissionReview"})), "AdmissionReview has no request");
        assert_eq!(err(json!({"request": {"uid": "x"}})), "AdmissionReview request x has no object");
        assert_eq!(err(json!({"request": {"object": {}}})), "AdmissionReview request has no uid");
        assert!(err(json!({"kind": "Pod", "request": {}})).contains("\"Pod\""));
        assert!(err(json!({"apiVersion": "v9", "request": {}})).contains("\"v9\""));
    }

    #[test]
    fn responses_have_the_api_server_shape() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels", "value": {}}])).unwrap();
        let out: Value =
            serde_json::from_slice(&render_response("admission.k8s.io/v1", "u", &Verdict::Patch(patch)).unwrap())
                .unwrap();
        assert_eq!(out["response"]["uid"], "u");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD.decode(out["response"]["patch"].as_str().unwrap());
        let ops: Value = serde_json::from_slice(&decoded.unwrap()).unwrap();
        assert_eq!(ops[0]["path"], "/metadata/labels");
        let out: Value =
            serde_json::from_slice(&render_response("admission.k8s.io/v1", "u", &Verdict::Deny("no".into())).unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "u", "allowed": false, "status": {"message": "no"}}})
        );
    }

    #[test]
    fn inject_paths() {
        assert_eq!(parse_inject_path(""), Ok(InjectTarget::default()));
        assert_eq!(
            parse_inject_path("cluster/c1/net/n1"),
            Ok(InjectTarget { cluster: Some("c1".into()), network: Some("n1".into()) })
        );
        assert!(matches!(parse_inject_path("cluster"), Err(PathError::MissingValue(..))));
        assert!(matches!(parse_inject_path("zone/z"), Err(PathError::UnknownKey(..))));
    }
}
