//! AdmissionReview in and out: parse the API server's request, build the response. Pure, no I/O.
//!
//! kube-core's `AdmissionResponse` serialises the patch as an array of numbers; the API server wants
//! base64 text, so the response is written with the small types here.

use base64::Engine as _;
use std::borrow::Cow;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Why an [`EncodedPatch`]'s text cannot be read back (never for one this crate encoded).
#[derive(Debug, thiserror::Error)]
pub enum PatchTextError {
    /// Not base64.
    #[error("patch is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not UTF-8 text.
    #[error("patch is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The AdmissionReview API versions the webhook answers (the response echoes the request's).
pub const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a request body is not a usable AdmissionReview (answered with 400 and this message).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The body is not JSON, or not an object of the AdmissionReview shape.
    #[error("malformed AdmissionReview JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not UTF-8 text.
    #[error("malformed AdmissionReview JSON: not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
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
struct WireReview<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<WireRequest<'a>>,
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    #[serde(borrow)]
    object: Option<Object<'a>>,
}

/// The object under review, read in one pass over the body and not built: its members as the body
/// has them (raw JSON text), and `metadata` member by member without `managedFields` (which never
/// affect injection and are often a third of a pod; Istio drops them too). The review cache keys on
/// this text ([`crate::cache::Key`]); injection gets a [`Value`] only for reviews the cache cannot
/// answer ([`Object::to_value`]).
#[derive(Debug, Clone)]
pub enum Object<'a> {
    /// A JSON object (a pod): its members in order.
    Members(Vec<(Cow<'a, str>, Member<'a>)>),
    /// Any other JSON value.
    Other(Value),
}

/// A member of the [`Object`].
#[derive(Debug, Clone)]
pub enum Member<'a> {
    /// Any member but `metadata`, as raw JSON text.
    Raw(&'a RawValue),
    /// `metadata` when it is a JSON object: its members but `managedFields`, as raw JSON text.
    Metadata(Vec<(Cow<'a, str>, &'a RawValue)>),
    /// `metadata` when it is not a JSON object.
    Value(Value),
}

impl<'a> Object<'a> {
    /// The object as a [`Value`] (without `metadata.managedFields`), member order kept; of duplicate
    /// members the last value wins, as when the body is parsed into a [`Value`].
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let members = match self {
            Object::Other(value) => return Ok(value.clone()),
            Object::Members(members) => members,
        };
        let mut map = serde_json::Map::with_capacity(members.len());
        for (name, member) in members {
            let value = match member {
                Member::Raw(raw) => serde_json::from_str(raw.get())?,
                Member::Value(value) => value.clone(),
                Member::Metadata(fields) => {
                    let mut meta = serde_json::Map::with_capacity(fields.len());
                    for (field, raw) in fields {
                        meta.insert(field.to_string(), serde_json::from_str(raw.get())?);
                    }
                    Value::Object(meta)
                }
            };
            map.insert(name.to_string(), value);
        }
        Ok(Value::Object(map))
    }

    /// `metadata.<field>` when it is a string (of duplicates, the last, as in [`Object::to_value`]).
    fn metadata_str(&self, field: &str) -> Option<String> {
        let Object::Members(members) = self else { return None };
        let fields = members.iter().rev().find(|(name, _)| name == "metadata").map(|(_, member)| member)?;
        let Member::Metadata(fields) = fields else { return None };
        let raw = fields.iter().rev().find(|(name, _)| name == field)?.1;
        serde_json::from_str::<String>(raw.get()).ok()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// A member name, borrowed from the body unless it has escapes.
struct MemberName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The visits of everything but a JSON object, building a [`Value`] and wrapping it with `$wrap`.
macro_rules! non_object_visits {
    ($wrap:expr) => {
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(Value::Bool(v)))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(Value::from(v)))
        }

        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(v.to_owned())))
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map($wrap)
        }
    };
}

/// Reads the object: members as raw text, `metadata` with [`MetadataSeed`].
struct ObjectVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ObjectVisitor<'a> {
    type Value = Object<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    non_object_visits!(Object::Other);

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Object<'a>, A::Error> {
        let mut members = Vec::with_capacity(6);
        while let Some(MemberName(name)) = access.next_key()? {
            let member = if name == "metadata" {
                access.next_value_seed(MetadataSeed)?
            } else {
                Member::Raw(access.next_value::<&'de RawValue>()?)
            };
            members.push((name, member));
        }
        Ok(Object::Members(members))
    }
}

/// Reads `metadata`: members but `managedFields` as raw text (`managedFields` skipped unbuilt).
struct MetadataSeed;

impl<'de> serde::de::DeserializeSeed<'de> for MetadataSeed {
    type Value = Member<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Member<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MetadataSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    non_object_visits!(Member::Value);

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Member<'de>, A::Error> {
        let mut fields = Vec::with_capacity(8);
        while let Some(MemberName(name)) = access.next_key()? {
            if name == "managedFields" {
                access.next_value::<serde::de::IgnoredAny>()?;
            } else {
                fields.push((name, access.next_value::<&'de RawValue>()?));
            }
        }
        Ok(Member::Metadata(fields))
    }
}

/// The parts of an AdmissionReview request the webhook uses.
#[derive(Debug, Clone)]
pub struct ReviewRequest<'a> {
    /// The review's apiVersion, echoed in the response.
    pub api_version: String,
    /// The request uid, echoed in the response.
    pub uid: String,
    /// The request's namespace (empty when the API server sent none).
    pub namespace: String,
    /// The object's name: `request.name`, else `metadata.name`, else `metadata.generateName`.
    pub name: String,
    /// The object under review (a pod), read but not built.
    pub object: Object<'a>,
}

impl ReviewRequest<'_> {
    /// The object as a [`Value`], without `metadata.managedFields` (see [`Object`]).
    pub fn object_value(&self) -> Result<Value, AdmissionError> {
        Ok(self.object.to_value()?)
    }
}

/// Parses an AdmissionReview body (the object is read, not built: see [`Object`]).
pub fn parse_review(body: &[u8]) -> Result<ReviewRequest<'_>, AdmissionError> {
    // Checked once here, the text is then read without checking each string again.
    let text = std::str::from_utf8(body).map_err(|e| match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(json) => AdmissionError::Json(json),
        Ok(_) => AdmissionError::Utf8(e),
    })?;
    let review: WireReview<'_> = serde_json::from_str(text)?;
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
    let object = match request.object {
        Some(Object::Other(Value::Null)) | None => return Err(AdmissionError::NoObject { uid }),
        Some(object) => object,
    };
    let name = match request.name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => object
            .metadata_str("name")
            .filter(|n| !n.is_empty())
            .or_else(|| object.metadata_str("generateName"))
            .unwrap_or_default(),
    };
    Ok(ReviewRequest { api_version, uid, namespace: request.namespace.unwrap_or_default(), name, object })
}

/// What the webhook answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed, unchanged.
    Allow,
    /// Allowed with a JSON Patch (see [`Verdict::patch`]).
    Patch(EncodedPatch),
    /// Refused with this message.
    Deny(String),
}

impl Verdict {
    /// Allowed with `patch`, encoded as the response carries it.
    pub fn patch(patch: &json_patch::Patch) -> Result<Verdict, serde_json::Error> {
        Ok(Verdict::Patch(EncodedPatch::from_json(&serde_json::to_vec(patch)?)))
    }
}

/// A JSON Patch as the response carries it: its JSON text in base64. Only this module and the
/// review cache make one, always by encoding, so the text never needs JSON escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPatch(String);

impl EncodedPatch {
    /// The patch whose JSON text is `json`.
    pub(crate) fn from_json(json: &[u8]) -> EncodedPatch {
        EncodedPatch(base64::engine::general_purpose::STANDARD.encode(json))
    }

    /// The patch's JSON text (decoded from the base64).
    pub fn json(&self) -> Result<String, PatchTextError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.0)?;
        Ok(String::from_utf8(bytes)?)
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes allocated for the text (its capacity), what keeping it costs.
    pub fn allocated(&self) -> usize {
        self.0.capacity()
    }
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
        Verdict::Patch(patch) => return render_patch_response(api_version, uid, patch.as_str()),
        Verdict::Deny(message) => (false, Some(OutStatus { message })),
    };
    serde_json::to_vec(&OutReview {
        api_version,
        kind: "AdmissionReview",
        response: OutResponse { uid, allowed, status, patch_type: None, patch: None },
    })
}

/// The response with a patch, written directly: the base64 text (never needing JSON escaping) is
/// copied as it is; the same bytes [`OutReview`] would serialise to.
fn render_patch_response(api_version: &str, uid: &str, base64: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(base64.len() + api_version.len() + uid.len() + 128);
    out.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut out, api_version)?;
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut out, uid)?;
    out.extend_from_slice(b",\"allowed\":true,\"patchType\":\"JSONPatch\",\"patch\":\"");
    out.extend_from_slice(base64.as_bytes());
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
    /// A segment whose percent-decoded bytes are not UTF-8 text without control characters.
    #[error("path /inject/{0}: segment {1:?} {2} (cluster and network names are printable UTF-8 text)")]
    BadBytes(String, String, &'static str),
}

/// Parses the part of the path after `/inject/`, as sent (percent-encoded): `key/value` pairs with
/// keys `cluster` and `net`; each segment is percent-decoded.
pub fn parse_inject_path(rest: &str) -> Result<InjectTarget, PathError> {
    let mut target = InjectTarget::default();
    let mut parts = rest.split('/').filter(|p| !p.is_empty()).map(|p| decode_segment(rest, p));
    while let Some(key) = parts.next() {
        let key = key?;
        let value = parts.next().ok_or_else(|| PathError::MissingValue(rest.to_string(), key.clone()))??;
        match key.as_str() {
            "cluster" => target.cluster = Some(value),
            "net" => target.network = Some(value),
            other => return Err(PathError::UnknownKey(rest.to_string(), other.to_string())),
        }
    }
    Ok(target)
}

/// Percent-decodes one path segment into printable UTF-8 text.
fn decode_segment(rest: &str, segment: &str) -> Result<String, PathError> {
    let bad = |why| PathError::BadBytes(rest.to_string(), segment.to_string(), why);
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("has a % not followed by two hex digits"))?;
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| bad("does not decode to UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(bad("decodes to a control character"));
    }
    Ok(text)
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
            let body = review.to_string();
            let parsed = parse_review(body.as_bytes()).unwrap();
            let parsed_object = parsed.object_value().unwrap();
            let mut want = object.clone();
            if let Some(meta) = want.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            assert_eq!(parsed_object, want);
            assert_eq!(parsed_object.to_string(), want.to_string(), "member order kept");
        }
    }

    #[test]
    fn objects_read_in_one_pass_equal_the_parsed_value() {
        let objects = [
            r#"{"metadata":{"name":"a","name":"b","managedFields":[1]},"spec":{},"metadata":{"labels":{"x":"y"}}}"#,
            r#"{"kind":"Pod","kind":"Other","metadata":{"managedFields":[],"name":"p","managedFields":{"x":1}}}"#,
            r#"{"meta\u0064ata":{"l\u0061bels":{"a\nb":"\u00e9"},"managedFields":[2]}, "spec" : { "x" : [ 1 , 2 ] } }"#,
            r#"{}"#,
            r#"{"metadata":{}}"#,
            r#"{"metadata":[1,{"managedFields":1}]}"#,
        ];
        for text in objects {
            let body = format!(r#"{{"request":{{"uid":"u","object":{text}}}}}"#);
            let parsed = parse_review(body.as_bytes()).unwrap().object_value().unwrap();
            let mut want: Value = serde_json::from_str(text).unwrap();
            if let Some(meta) = want.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            assert_eq!(parsed.to_string(), want.to_string(), "{text}");
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
            let got = render_response(api_version, uid, &Verdict::patch(&patch).unwrap()).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn parses_a_review_and_drops_managed_fields() {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "namespace": "foo", "object": {"metadata": {"generateName": "web-", "managedFields": [1]}}}});
        let body = serde_json::to_vec(&body).unwrap();
        let req = parse_review(&body).unwrap();
        assert_eq!((req.uid.as_str(), req.namespace.as_str(), req.name.as_str()), ("u1", "foo", "web-"));
        assert_eq!(req.object_value().unwrap(), json!({"metadata": {"generateName": "web-"}}));
    }

    #[test]
    fn the_name_comes_from_the_request_else_the_metadata() {
        let name = |request: Value| {
            let body = serde_json::to_vec(&json!({"request": request})).unwrap();
            parse_review(&body).unwrap().name
        };
        let meta = json!({"name": "m", "generateName": "g-"});
        assert_eq!(name(json!({"uid": "u", "name": "r", "object": {"metadata": meta}})), "r");
        assert_eq!(name(json!({"uid": "u", "name": "", "object": {"metadata": meta}})), "m");
        assert_eq!(name(json!({"uid": "u", "object": {"metadata": {"generateName": "g-", "name": 5}}})), "g-");
        assert_eq!(name(json!({"uid": "u", "object": {"spec": {"metadata": {"name": "deep"}}}})), "");
        let escaped = br#"{"request":{"uid":"u","object":{"meta\u0064ata":{"n\u0061me":"esc"}}}}"#;
        assert_eq!(parse_review(escaped).unwrap().name, "esc");
    }

    #[test]
    fn bad_reviews_are_named() {
        let err = |v: Value| parse_review(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
        assert!(parse_review(b"{").unwrap_err().to_string().starts_with("malformed AdmissionReview JSON"));
        let not_utf8 = parse_review(b"{\"request\":{\"uid\":\"\xff\"}}").unwrap_err().to_string();
        assert!(not_utf8.starts_with("malformed AdmissionReview JSON: not UTF-8"), "{not_utf8}");
        let broken = parse_review(b"{\"request\":{\"uid\":\"\xff}").unwrap_err().to_string();
        assert!(broken.starts_with("malformed AdmissionReview JSON") && broken.contains("column"), "{broken}");
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
        let out: Value = serde_json::from_slice(
            &render_response("admission.k8s.io/v1", "u", &Verdict::patch(&patch).unwrap()).unwrap(),
        )
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
        assert_eq!(
            parse_inject_path("cluster/c%201/net/n%2D1"),
            Ok(InjectTarget { cluster: Some("c 1".into()), network: Some("n-1".into()) })
        );
        let nul = parse_inject_path("cluster/%00/net/n").unwrap_err();
        assert!(nul.to_string().contains("\"%00\" decodes to a control character"), "{nul}");
        let ff = parse_inject_path("cluster/c/net/%ff").unwrap_err();
        assert!(ff.to_string().contains("\"%ff\" does not decode to UTF-8"), "{ff}");
        assert!(matches!(parse_inject_path("cluster/%4"), Err(PathError::BadBytes(..))));
    }
}
