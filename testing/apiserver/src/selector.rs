//! Label and field selectors, parsed and matched the way the real server does.

use std::collections::BTreeMap;

use serde_json::Value;

use super::status::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    NotExists(String),
}

/// A parsed label selector (`app=foo,version in (v1,v2),!canary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn values_list(text: &str, selector: &str) -> Result<Vec<String>, ApiError> {
    let inner = text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unable to parse requirement: found '{text}', expected: '('  in label selector {selector:?}"
        ))
    })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    /// Parses `labelSelector`; a bad selector is a 400 naming it.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotIn(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_string(), values_list(v, text)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().to_string(), values_list(v, text)?)
            } else if part.contains(char::is_whitespace) || part.contains(['(', ')', '<', '>']) {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector {text:?}"
                )));
            } else {
                Requirement::Exists(part.to_string())
            };
            let key = match &req {
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if key.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: empty key in label selector {text:?}"
                )));
            }
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
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
        for part in split_top_level(text) {
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

    #[test]
    fn label_selectors() -> Result<(), ApiError> {
        let p = pod();
        for (sel, want) in [
            ("app=foo", true),
            ("app==foo", true),
            ("app=bar", false),
            ("app!=bar", true),
            ("app,version=v1", true),
            ("version in (v1, v2)", true),
            ("version notin (v1)", false),
            ("!canary", true),
            ("!app", false),
            ("canary", false),
            ("app=foo,version in (v2,v3)", false),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel)?.matches(&p), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in v1").is_err());
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
