//! Kubernetes label selectors, evaluated exactly as the API server does: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist) are ANDed, NotIn and DoesNotExist match an
//! absent label, an empty selector matches everything, and a malformed requirement (In/NotIn without
//! values, Exists/DoesNotExist with values) is an error.
//!
//! One implementation for everything in mesh that selects: the injector config's
//! `neverInjectSelector`/`alwaysInjectSelector`, `kubectl mesh check-inject` and `injector list`
//! (webhook `namespaceSelector`/`objectSelector`), and the test API server's `labelSelector` queries
//! (the text form, [`LabelSelector::parse`]). [`parse_labels`] reads a set of labels (`app=foo,tier=`),
//! for `kubectl mesh check-inject -l`, with the API server's rules for keys and values.

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
    /// A key or value of the text form that Kubernetes would refuse.
    #[error("{error} in label selector {text:?}")]
    InvalidLabel {
        /// The whole selector text.
        text: String,
        /// The bad key or value.
        error: LabelError,
    },
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
    /// `=`/`==`/`in` become In, `!=`/`notin` NotIn, `key` Exists and `!key` DoesNotExist. Keys and
    /// values are checked as labels ([`validate_label_key`], [`validate_label_value`]).
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
            let invalid = |error| SelectorError::InvalidLabel { text: text.to_string(), error };
            validate_label_key(key).map_err(invalid)?;
            for v in &values {
                validate_label_value(key, v).map_err(invalid)?;
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
    split_terms(text).into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Why a label key or value is not one Kubernetes accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The key is not a qualified name (an optional DNS-subdomain prefix and `/`, then a name).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The value is too long or has characters a label value cannot have.
    #[error("invalid value {value:?} for label {key}: {reason}")]
    InvalidValue {
        /// The label's key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a set of labels (`app=foo,version=v1`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    /// A key or value Kubernetes would refuse.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// A selector term (`k!=v`, `k in (a,b)`, `!k`, `k`) that selects labels but gives none.
    #[error("{term:?} is a selector requirement ({what}), not a label: a label is key=value")]
    NotALabel {
        /// The term.
        term: String,
        /// What kind of requirement it is.
        what: &'static str,
    },
    /// Nothing between two commas (or before or after one).
    #[error("empty label in {text:?}: labels are key=value pairs separated by commas")]
    EmptyTerm {
        /// The whole text.
        text: String,
    },
    /// One key given twice with different values.
    #[error("label {key} is given twice, as {first:?} and {second:?}: a pod has one value per label")]
    Conflict {
        /// The key.
        key: String,
        /// The first value.
        first: String,
        /// The other value.
        second: String,
    },
}

/// The characters, start and end of a label name (and of a non-empty label value), as Kubernetes
/// checks them: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_label_name(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(s.chars().next())
        && alnum(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A lowercase RFC 1123 subdomain: dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|part| {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        edge(part.chars().next())
            && edge(part.chars().last())
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

/// Checks a label key by Kubernetes' rules: an optional prefix (a lowercase DNS subdomain of at most
/// 253 characters) and `/`, then a name of at most 63 characters of `[A-Za-z0-9._-]` that starts and
/// ends with a letter or digit.
pub fn validate_label_key(key: &str) -> Result<(), LabelError> {
    let invalid = |reason: String| Err(LabelError::InvalidKey { key: key.to_string(), reason });
    let (prefix, name) = match key.split_once('/') {
        Some((_, rest)) if rest.contains('/') => {
            return invalid("a key has at most one '/' (an optional DNS subdomain prefix, then the name)".into());
        }
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return invalid("the prefix before '/' must be non-empty".into());
        }
        if prefix.len() > 253 {
            return invalid(format!("the prefix must be no more than 253 characters (it has {})", prefix.len()));
        }
        if !is_dns_subdomain(prefix) {
            return invalid(format!(
                "the prefix {prefix:?} must be a lowercase DNS subdomain (a-z, 0-9, '-' and '.', each part \
                 starting and ending with a letter or digit, e.g. example.com)"
            ));
        }
    }
    if name.is_empty() {
        return invalid("the name must be non-empty".into());
    }
    if name.len() > 63 {
        return invalid(format!("the name must be no more than 63 characters (it has {})", name.len()));
    }
    if !is_label_name(name) {
        return invalid(format!(
            "the name {name:?} must consist of letters, digits, '-', '_' or '.', and start and end with a \
             letter or digit"
        ));
    }
    Ok(())
}

/// Checks the value of label `key` by Kubernetes' rules: empty, or at most 63 characters of
/// `[A-Za-z0-9._-]` that start and end with a letter or digit.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), LabelError> {
    let invalid =
        |reason: String| Err(LabelError::InvalidValue { key: key.to_string(), value: value.to_string(), reason });
    if value.len() > 63 {
        return invalid(format!("a label value must be no more than 63 characters (it has {})", value.len()));
    }
    if !value.is_empty() && !is_label_name(value) {
        return invalid(
            "a label value must be empty or consist of letters, digits, '-', '_' or '.', and start and end with \
             a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Parses a set of labels as kubectl users write them (`app=foo,version=v1`): comma-separated
/// `key=value` (or `key==value`) pairs, whitespace around keys and values trimmed, values may be
/// empty, keys and values checked by Kubernetes' rules. Selector-only terms (`k!=v`, `k in (a,b)`,
/// `!k`, `k`) and one key with two values are errors. Empty text is no labels.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, LabelsError> {
    let mut labels = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(labels);
    }
    for term in split_terms(text) {
        let term = term.trim();
        if term.is_empty() {
            return Err(LabelsError::EmptyTerm { text: text.to_string() });
        }
        let not_a_label = |what| LabelsError::NotALabel { term: term.to_string(), what };
        if term.contains("!=") {
            return Err(not_a_label("key != value"));
        }
        if term.starts_with('!') {
            return Err(not_a_label("the label is absent"));
        }
        let Some((key, value)) = term.split_once('=') else {
            let set = term.contains('(') || term.split_whitespace().any(|w| w == "in" || w == "notin");
            return Err(not_a_label(if set { "key in/notin a set of values" } else { "the label exists" }));
        };
        let value = value.strip_prefix('=').unwrap_or(value);
        let (key, value) = (key.trim(), value.trim());
        validate_label_key(key)?;
        validate_label_value(key, value)?;
        match labels.get(key) {
            Some(first) if first != value => {
                return Err(LabelsError::Conflict {
                    key: key.to_string(),
                    first: first.clone(),
                    second: value.to_string(),
                });
            }
            _ => {
                labels.insert(key.to_string(), value.to_string());
            }
        }
    }
    Ok(labels)
}

/// Splits on commas outside parentheses, keeping empty parts (so that `a=1,,b=2` can be refused).
fn split_terms(text: &str) -> Vec<&str> {
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
    parts
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

    #[test]
    fn label_sets_as_kubectl_users_write_them() {
        let ok = |text: &str, want: &[(&str, &str)]| {
            assert_eq!(parse_labels(text), Ok(labels(want)), "{text}");
        };
        ok("app=foo", &[("app", "foo")]);
        ok("app==foo", &[("app", "foo")]);
        ok("app=foo,version=v1", &[("app", "foo"), ("version", "v1")]);
        ok(" app = foo , version==v1 ", &[("app", "foo"), ("version", "v1")]);
        ok("canary=", &[("canary", "")]);
        ok("app.kubernetes.io/name=x", &[("app.kubernetes.io/name", "x")]);
        ok("example.com/My_Name.v-2=Some.Value_1", &[("example.com/My_Name.v-2", "Some.Value_1")]);
        ok("a=1,a=1", &[("a", "1")]);
        ok("", &[]);
        ok("  ", &[]);
        let longest_name = "n".repeat(63);
        let longest_prefix = format!("{}.{}", "p".repeat(126), "q".repeat(126));
        let key = format!("{longest_prefix}/{longest_name}");
        ok(&format!("{key}={}", "v".repeat(63)), &[(&key, &"v".repeat(63))]);
    }

    #[test]
    fn label_sets_refuse_selector_terms_duplicates_and_bad_keys_and_values() {
        let err = |text: &str| parse_labels(text).expect_err(text).to_string();
        assert_eq!(
            err("a!=b"),
            r#""a!=b" is a selector requirement (key != value), not a label: a label is key=value"#
        );
        assert_eq!(
            err("app=x,tier in (web,db)"),
            r#""tier in (web,db)" is a selector requirement (key in/notin a set of values), not a label: a label is key=value"#
        );
        assert_eq!(
            err("tier notin (web)"),
            r#""tier notin (web)" is a selector requirement (key in/notin a set of values), not a label: a label is key=value"#
        );
        assert_eq!(
            err("!canary"),
            r#""!canary" is a selector requirement (the label is absent), not a label: a label is key=value"#
        );
        assert_eq!(
            err("app=x,canary"),
            r#""canary" is a selector requirement (the label exists), not a label: a label is key=value"#
        );
        assert_eq!(err("a=1,a=2"), r#"label a is given twice, as "1" and "2": a pod has one value per label"#);
        assert_eq!(err("a=1,,b=2"), r#"empty label in "a=1,,b=2": labels are key=value pairs separated by commas"#);
        assert_eq!(err("a=1,"), r#"empty label in "a=1,": labels are key=value pairs separated by commas"#);
        assert_eq!(err("=v"), r#"invalid label key "": the name must be non-empty"#);
        assert_eq!(err("example.com/=v"), r#"invalid label key "example.com/": the name must be non-empty"#);
        assert_eq!(err("/name=v"), r#"invalid label key "/name": the prefix before '/' must be non-empty"#);
        assert_eq!(
            err("a/b/c=v"),
            r#"invalid label key "a/b/c": a key has at most one '/' (an optional DNS subdomain prefix, then the name)"#
        );
        assert_eq!(
            err("Example.com/name=v"),
            r#"invalid label key "Example.com/name": the prefix "Example.com" must be a lowercase DNS subdomain (a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit, e.g. example.com)"#
        );
        assert!(err("-example.com/name=v").contains(r#"the prefix "-example.com" must be a lowercase DNS subdomain"#));
        assert!(err("example..com/name=v").contains(r#"the prefix "example..com" must be a lowercase DNS subdomain"#));
        assert!(err("exa_mple.com/name=v").contains(r#"the prefix "exa_mple.com" must be"#));
        let long_prefix = format!("{}/n=v", "p".repeat(254));
        assert_eq!(
            err(&long_prefix),
            format!(
                "invalid label key {:?}: the prefix must be no more than 253 characters (it has 254)",
                &long_prefix[..256]
            )
        );
        let long_name = format!("{}=v", "n".repeat(64));
        assert_eq!(
            err(&long_name),
            format!("invalid label key {:?}: the name must be no more than 63 characters (it has 64)", "n".repeat(64))
        );
        for bad in ["-app", "app-", "_app", "app.", "a b", "ap%p", "äpp"] {
            assert_eq!(
                err(&format!("{bad}=v")),
                format!(
                    "invalid label key {bad:?}: the name {bad:?} must consist of letters, digits, '-', '_' or '.', and \
                     start and end with a letter or digit"
                ),
                "{bad}"
            );
        }
        for bad in ["-v", "v-", ".v", "v_", "a b", "a/b", "v=1", "é"] {
            assert_eq!(
                err(&format!("app={bad}")),
                format!(
                    "invalid value {bad:?} for label app: a label value must be empty or consist of letters, digits, \
                     '-', '_' or '.', and start and end with a letter or digit"
                ),
                "{bad}"
            );
        }
        assert_eq!(
            err(&format!("app={}", "v".repeat(64))),
            format!(
                "invalid value {:?} for label app: a label value must be no more than 63 characters (it has 64)",
                "v".repeat(64)
            )
        );
        assert!(matches!(parse_labels("a=1,a=2"), Err(LabelsError::Conflict { .. })));
    }

    #[test]
    fn text_form_checks_keys_and_values() {
        let err = |text: &str| LabelSelector::parse(text).expect_err(text).to_string();
        assert_eq!(
            err("app=foo,Bad.Prefix/x=1"),
            r#"invalid label key "Bad.Prefix/x": the prefix "Bad.Prefix" must be a lowercase DNS subdomain (a-z, 0-9, '-' and '.', each part starting and ending with a letter or digit, e.g. example.com) in label selector "app=foo,Bad.Prefix/x=1""#
        );
        assert!(err("!-x").starts_with(r#"invalid label key "-x": the name "-x" must consist"#));
        assert!(err(&"k".repeat(64)).contains("the name must be no more than 63 characters (it has 64)"));
        assert!(err("app!=-v").starts_with(r#"invalid value "-v" for label app: a label value must be empty"#));
        assert!(err("app in (ok, bad_)").starts_with(r#"invalid value "bad_" for label app"#));
        assert!(err("app notin (x y)").starts_with(r#"invalid value "x y" for label app"#));
        assert!(err(&format!("app={}", "v".repeat(64))).contains("no more than 63 characters (it has 64)"));
        // Valid prefixed keys and empty values still parse.
        let s = LabelSelector::parse("app.kubernetes.io/name=x,canary=,example.com/t in (a.b, c-d)").expect("parses");
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "x"), ("canary", ""), ("example.com/t", "c-d")])));
    }
}
