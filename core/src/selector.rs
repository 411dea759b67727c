//! Kubernetes label selectors, evaluated exactly as the API server does: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist) are ANDed, NotIn and DoesNotExist match an
//! absent label, an empty selector matches everything, and a malformed requirement (In/NotIn without
//! values, Exists/DoesNotExist with values) is an error.
//!
//! One implementation for everything in mesh that selects: the injector config's
//! `neverInjectSelector`/`alwaysInjectSelector`, `kubectl mesh check-inject` and `injector list`
//! (webhook `namespaceSelector`/`objectSelector`), and the test API server's `labelSelector` queries
//! (the text form, [`LabelSelector::parse`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    pub match_labels: BTreeMap<String, String>,
    /// Expressions that must all hold.
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl std::fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// Why a selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `In`/`NotIn` without values.
    #[error("label selector requirement {key} {operator}: values must be non-empty")]
    MissingValues {
        /// The requirement's key.
        key: String,
        /// Its operator.
        operator: SelectorOperator,
    },
    /// `Exists`/`DoesNotExist` with values.
    #[error("label selector requirement {key} {operator}: values must be empty")]
    UnexpectedValues {
        /// The requirement's key.
        key: String,
        /// Its operator.
        operator: SelectorOperator,
    },
    /// A requirement without a key.
    #[error("label selector requirement with an empty key")]
    EmptyKey,
    /// The text form does not parse.
    #[error("unable to parse requirement: {reason} in label selector {text:?}")]
    Syntax {
        /// The whole selector text.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// A set of labels a selector can look into.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// The labels of a Kubernetes object (`metadata.labels`), none when it has none.
pub fn labels_of(obj: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    obj.pointer("/metadata/labels").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

impl LabelSelector {
    /// Whether the selector has no requirement at all (it then matches everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Checks every requirement's shape, as the API server does when it converts a selector.
    pub fn validate(&self) -> Result<(), SelectorError> {
        for k in self.match_labels.keys() {
            if k.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
        }
        for e in &self.match_expressions {
            if e.key.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            match e.operator {
                SelectorOperator::In | SelectorOperator::NotIn if e.values.is_empty() => {
                    return Err(SelectorError::MissingValues { key: e.key.clone(), operator: e.operator });
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist if !e.values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { key: e.key.clone(), operator: e.operator });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `labels` satisfy the selector (which must be valid: see [`LabelSelector::evaluate`]).
    /// An empty selector matches everything.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// The API server's evaluation of an optional selector (a webhook's `namespaceSelector` or
    /// `objectSelector`): a missing selector matches everything; a malformed one is an error.
    pub fn evaluate(selector: Option<&LabelSelector>, labels: &impl Labels) -> Result<bool, SelectorError> {
        let Some(selector) = selector else { return Ok(true) };
        selector.validate()?;
        Ok(selector.matches(labels))
    }

    /// The first requirement that `labels` fail, rendered in the text form (`istio-injection=enabled`,
    /// `istio.io/rev notin (canary)`, `!istio-injection`), or `None` when they match.
    pub fn first_failure(&self, labels: &impl Labels) -> Option<String> {
        for (k, v) in &self.match_labels {
            if labels.label(k) != Some(v.as_str()) {
                return Some(format!("{k}={v}"));
            }
        }
        self.match_expressions.iter().find(|e| !e.matches(labels)).map(LabelSelectorRequirement::to_string)
    }

    /// Parses the text form of list and watch queries (`app=foo,version in (v1,v2),!canary,tier`):
    /// `=`/`==`/`in` become In, `!=`/`notin` NotIn, `key` Exists and `!key` DoesNotExist.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let syntax = |reason: String| SelectorError::Syntax { text: text.to_string(), reason };
        let values = |list: &str| -> Result<Vec<String>, SelectorError> {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| syntax(format!("found '{}', expected: '('", list.trim())))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
        };
        let mut match_expressions = Vec::new();
        for part in split_top_level(text) {
            let (key, operator, values) = if let Some(key) = part.strip_prefix('!') {
                (key, SelectorOperator::DoesNotExist, Vec::new())
            } else if let Some((k, v)) = part.split_once("!=") {
                (k, SelectorOperator::NotIn, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once("==") {
                (k, SelectorOperator::In, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once('=') {
                (k, SelectorOperator::In, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once(" notin ") {
                (k, SelectorOperator::NotIn, values(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                (k, SelectorOperator::In, values(v)?)
            } else if part.contains(char::is_whitespace) || part.contains(['(', ')', '<', '>']) {
                return Err(syntax(format!("invalid requirement {part:?}")));
            } else {
                (part, SelectorOperator::Exists, Vec::new())
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax("empty key".into()));
            }
            match_expressions.push(LabelSelectorRequirement { key: key.to_string(), operator, values });
        }
        Ok(LabelSelector { match_labels: BTreeMap::new(), match_expressions })
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl std::fmt::Display for LabelSelectorRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = &self.key;
        match (self.operator, self.values.as_slice()) {
            (SelectorOperator::In, [one]) => write!(f, "{key}={one}"),
            (SelectorOperator::NotIn, [one]) => write!(f, "{key}!={one}"),
            (SelectorOperator::In, vs) => write!(f, "{key} in ({})", vs.join(",")),
            (SelectorOperator::NotIn, vs) => write!(f, "{key} notin ({})", vs.join(",")),
            (SelectorOperator::Exists, _) => write!(f, "{key}"),
            (SelectorOperator::DoesNotExist, _) => write!(f, "!{key}"),
        }
    }
}

/// Splits on commas that are not inside parentheses, dropping empty parts (the text form of label
/// and field selectors).
pub fn split_top_level(text: &str) -> Vec<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(v: Value) -> LabelSelector {
        serde_json::from_value(v).expect("selector")
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        sel(json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}))
    }

    #[test]
    fn every_operator_with_present_and_missing_labels() {
        let none = labels(&[]);
        let v = labels(&[("k", "v")]);
        let w = labels(&[("k", "w")]);
        for (op, values, on_none, on_v, on_w) in [
            ("In", &["v"][..], false, true, false),
            ("In", &["v", "w"][..], false, true, true),
            ("NotIn", &["v"][..], true, false, true),
            ("Exists", &[][..], false, true, true),
            ("DoesNotExist", &[][..], true, false, false),
        ] {
            let s = expr("k", op, values);
            assert_eq!(LabelSelector::evaluate(Some(&s), &none), Ok(on_none), "{op} {values:?} on no labels");
            assert_eq!(LabelSelector::evaluate(Some(&s), &v), Ok(on_v), "{op} {values:?} on k=v");
            assert_eq!(LabelSelector::evaluate(Some(&s), &w), Ok(on_w), "{op} {values:?} on k=w");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let s = sel(json!({"matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}, {"key": "x", "operator": "DoesNotExist"}]}));
        assert!(s.matches(&labels(&[("app", "a"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("app", "b"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("app", "a"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "a"), ("tier", "web"), ("x", "")])));
        assert_eq!(s.first_failure(&labels(&[("app", "a"), ("tier", "db")])).as_deref(), Some("tier=web"));
        assert_eq!(s.first_failure(&labels(&[("app", "a"), ("tier", "web")])), None);
    }

    #[test]
    fn empty_and_missing_selectors_match_everything() {
        assert_eq!(LabelSelector::evaluate(None, &labels(&[])), Ok(true));
        assert_eq!(LabelSelector::evaluate(Some(&sel(json!({}))), &labels(&[("a", "b")])), Ok(true));
        assert!(sel(json!({})).is_empty());
        // A label whose value is empty is present.
        assert!(expr("k", "Exists", &[]).matches(&labels(&[("k", "")])));
        // JSON label maps too.
        let obj = json!({"metadata": {"labels": {"k": "v"}}});
        assert!(expr("k", "In", &["v"]).matches(labels_of(&obj)));
        assert!(expr("k", "DoesNotExist", &[]).matches(labels_of(&json!({}))));
    }

    #[test]
    fn malformed_requirements_are_errors() {
        let err = LabelSelector::evaluate(Some(&expr("k", "In", &[])), &labels(&[])).unwrap_err();
        assert_eq!(err.to_string(), "label selector requirement k In: values must be non-empty");
        let err = LabelSelector::evaluate(Some(&expr("k", "Exists", &["v"])), &labels(&[])).unwrap_err();
        assert_eq!(err.to_string(), "label selector requirement k Exists: values must be empty");
        assert!(
            serde_json::from_value::<LabelSelector>(json!({"matchExpressions": [{"key": "k", "operator": "Has"}]}))
                .is_err()
        );
    }

    #[test]
    fn text_form() {
        let pod = labels(&[("app", "foo"), ("version", "v1")]);
        for (text, want) in [
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
            assert_eq!(LabelSelector::parse(text).map(|s| s.matches(&pod)), Ok(want), "{text}");
        }
        assert!(LabelSelector::parse("app in v1").is_err());
        assert!(LabelSelector::parse("=v").is_err());
        let parsed = LabelSelector::parse("a=1,b notin (x,y),!c,d").expect("parses");
        let rendered: Vec<String> = parsed.match_expressions.iter().map(ToString::to_string).collect();
        assert_eq!(rendered, ["a=1", "b notin (x,y)", "!c", "d"]);
    }
}
