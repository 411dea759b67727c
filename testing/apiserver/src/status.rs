//! `Status` errors shaped exactly like the real API server's (`kind: Status`, `reason`, `details`).

use serde_json::{Value, json};

/// An API error: the HTTP code, the `reason`, the message and the `details` of a `Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code (401, 403, 404, 409, 422, ...).
    pub code: u16,
    /// The `reason` field (`NotFound`, `Forbidden`, `AlreadyExists`, ...).
    pub reason: &'static str,
    /// The human-readable `message`.
    pub message: String,
    /// The `details` object, when the real server sends one.
    pub details: Option<Value>,
}

/// The `details` of a Status about one object: `{name, group?, kind}` (`kind` is the plural resource).
fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(plural));
    Value::Object(d)
}

/// `pods` or `virtualservices.networking.istio.io`: how the real server names a resource in messages.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl ApiError {
    /// 404 `pods "foo" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(group, plural)),
            details: Some(details(group, plural, name)),
        }
    }

    /// 404 for a path the server does not serve: `the server could not find the requested resource`.
    pub fn no_resource() -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: Some(json!({})),
        }
    }

    /// 409 `pods "foo" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(group, plural)),
            details: Some(details(group, plural, name)),
        }
    }

    /// 409 Conflict on a stale `metadata.resourceVersion`.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your \
                 changes to the latest version and try again",
                qualified(group, plural)
            ),
            details: Some(details(group, plural, name)),
        }
    }

    /// 422 Invalid: `Pod "x" is invalid: <field>: <what>`.
    pub fn invalid(group: &str, kind: &str, name: &str, field: &str, what: &str) -> Self {
        let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut d = details(group, kind, name);
        if let Some(map) = d.as_object_mut() {
            map.insert("causes".into(), json!([{"reason": "FieldValueRequired", "message": what, "field": field}]));
        }
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{group_kind} \"{name}\" is invalid: {field}: {what}"),
            details: Some(d),
        }
    }

    /// 400 BadRequest with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { code: 400, reason: "BadRequest", message: message.into(), details: None }
    }

    /// 401 Unauthorized (missing or wrong bearer token).
    pub fn unauthorized() -> Self {
        ApiError { code: 401, reason: "Unauthorized", message: "Unauthorized".into(), details: None }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".into(),
            details: Some(json!({})),
        }
    }

    /// 415 UnsupportedMediaType for a body in a format the server does not decode (protobuf, CBOR, ...).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml (got {content_type:?})"
            ),
            details: None,
        }
    }

    /// 403 Forbidden, worded like RBAC's denial:
    /// `pods "foo" is forbidden: User "admin" cannot get resource "pods" in API group "" in the namespace "foo"`.
    pub fn forbidden(user: &str, verb: &str, group: &str, resource: &str, namespace: Option<&str>, name: &str) -> Self {
        let plural = resource.split_once('/').map_or(resource, |(p, _)| p);
        let subject =
            if name.is_empty() { qualified(group, plural) } else { format!("{} \"{name}\"", qualified(group, plural)) };
        let scope = match namespace {
            Some(ns) if !ns.is_empty() => format!("in the namespace \"{ns}\""),
            _ => "at the cluster scope".to_string(),
        };
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            ),
            details: Some(details(group, plural, name)),
        }
    }

    /// 410 Expired for a `continue` token whose snapshot is compacted, worded as the real server's.
    pub fn continue_expired() -> Self {
        ApiError {
            code: 410,
            reason: "Expired",
            message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
            details: None,
        }
    }

    /// 410 Expired: the requested resourceVersion is older than the server keeps.
    pub fn gone(rv: &str) -> Self {
        ApiError { code: 410, reason: "Expired", message: format!("too old resource version: {rv}"), details: None }
    }

    /// The `Status` body the real server sends for this error.
    pub fn to_status(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        m.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

/// A `Status` of `Success`, as returned by DELETE for most built-in types.
pub fn success(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut d = details(group, plural, name);
    if let Some(map) = d.as_object_mut() {
        map.insert("uid".into(), json!(uid));
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_the_real_404() -> anyhow::Result<()> {
        let dir = mesh_test_data::shared_dir()?.join("fixtures/kube-apiserver/error-404-pod.json");
        let real: Value = serde_json::from_str(&std::fs::read_to_string(dir)?)?;
        assert_eq!(ApiError::not_found("", "pods", "nonexistent").to_status(), real);
        Ok(())
    }

    #[test]
    fn forbidden_names_user_verb_resource_group_and_scope() {
        let e = ApiError::forbidden("admin", "list", "", "pods", Some("foo"), "");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"admin\" cannot list resource \"pods\" in API group \"\" in the namespace \"foo\""
        );
        let e = ApiError::forbidden("admin", "get", "networking.istio.io", "virtualservices", None, "bar");
        assert_eq!(
            e.message,
            "virtualservices.networking.istio.io \"bar\" is forbidden: User \"admin\" cannot get resource \
             \"virtualservices\" in API group \"networking.istio.io\" at the cluster scope"
        );
        assert_eq!(e.code, 403);
    }
}
