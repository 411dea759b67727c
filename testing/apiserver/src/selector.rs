//! Label and field selectors, parsed and matched the way the real server does.

use std::collections::BTreeMap;

use serde_json::Value;

use super::status::ApiError;

/// A parsed label selector (`app=foo,version in (v1,v2),!canary`): mesh-core's, the one evaluator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(mesh_core::selector::LabelSelector);

impl LabelSelector {
    /// Parses `labelSelector`; a bad selector is a 400 naming it.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        mesh_core::selector::LabelSelector::parse(text)
            .map(LabelSelector)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.matches(mesh_core::selector::labels_of(obj))
    }
}

/// A parsed field selector (`metadata.name=foo,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field path, value, equal?) triples.
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses `fieldSelector`, allowing `metadata.name`, `metadata.namespace` and the type's extra fields.
    pub fn parse(text: &str, allowed: &[String]) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in mesh_core::selector::split_top_level(text) {
            let (field, value, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{text}'; can't understand '{part}'")));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" && !allowed.iter().any(|a| a == field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), value.trim().to_string(), eq));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object's fields satisfy every term (a missing field reads as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, want, eq)| {
            let mut cur = Some(obj);
            for seg in field.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            (got == *want) == *eq
        })
    }
}

/// Label selector + field selector of one list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors from the query parameters.
    pub fn from_query(query: &BTreeMap<String, String>, allowed_fields: &[String]) -> Result<Self, ApiError> {
        Ok(Selectors {
            labels: match query.get("labelSelector") {
                Some(t) => LabelSelector::parse(t)?,
                None => LabelSelector::default(),
            },
            fields: match query.get("fieldSelector") {
                Some(t) => FieldSelector::parse(t, allowed_fields)?,
                None => FieldSelector::default(),
            },
        })
    }

    /// Whether the object is selected by both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "foo", "namespace": "ns", "labels": {"app": "foo", "version": "v1"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    /// The grammar is mesh-core's (tested there); this checks the wrapper: an object's
    /// `metadata.labels` are matched and a bad selector is a 400 naming it.
    #[test]
    fn label_selectors() -> Result<(), ApiError> {
        let p = pod();
        assert!(LabelSelector::parse("app=foo,version in (v1, v2)")?.matches(&p));
        assert!(!LabelSelector::parse("app=foo,!version")?.matches(&p));
        assert!(LabelSelector::parse("")?.matches(&p));
        let err = LabelSelector::parse("app in v1").err().map(|e| (e.code, e.message));
        assert!(err.as_ref().is_some_and(|(code, m)| *code == 400 && m.contains("app in v1")), "{err:?}");
        Ok(())
    }

    #[test]
    fn field_selectors() -> Result<(), ApiError> {
        let p = pod();
        let allowed = vec!["status.phase".to_string(), "spec.nodeName".to_string()];
        assert!(FieldSelector::parse("metadata.name=foo", &allowed)?.matches(&p));
        assert!(FieldSelector::parse("status.phase!=Pending,spec.nodeName=n1", &allowed)?.matches(&p));
        assert!(!FieldSelector::parse("metadata.namespace=other", &allowed)?.matches(&p));
        let err = FieldSelector::parse("spec.foo=x", &allowed).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("field label not supported: spec.foo"));
        Ok(())
    }
}
