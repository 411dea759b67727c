//! The version fields of every `-o json|yaml` document the plugin prints: `apiVersion`
//! ([`API_VERSION`]) and `kind` come first, then the command's own fields, so scripts can check what
//! they read before reading it. The schemas are documented with each command (docs/proxy-status.md,
//! docs/explain.md, docs/day2.md); `inject` prints Kubernetes objects, which carry their own.

use serde::Serialize;

/// The API version of the plugin's output documents. A field removed or changed in meaning gives a
/// new version; new fields may appear within one.
pub const API_VERSION: &str = "mesh.dev/v1alpha1";

/// The kinds of output document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `proxy-status`: the sync table as data.
    ProxyStatus,
    /// `proxy-status POD`: istiod's config for the proxy against Envoy's.
    ProxyStatusDiff,
    /// `explain`: the report.
    Explanation,
    /// `check-inject` with one target.
    CheckInject,
    /// `check-inject` with several targets (`items` of `CheckInject` bodies).
    CheckInjectList,
}

impl Kind {
    /// The `kind` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ProxyStatus => "ProxyStatus",
            Kind::ProxyStatusDiff => "ProxyStatusDiff",
            Kind::Explanation => "Explanation",
            Kind::CheckInject => "CheckInject",
            Kind::CheckInjectList => "CheckInjectList",
        }
    }
}

/// A document: the version fields, then `body`'s fields (`body` must serialize as a map or struct).
#[derive(Debug, Serialize)]
pub struct Versioned<'a, T: Serialize> {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// What the document is.
    pub kind: &'static str,
    /// The command's fields.
    #[serde(flatten)]
    pub body: &'a T,
}

/// Wraps `body` as a `kind` document of [`API_VERSION`].
pub fn versioned<T: Serialize>(kind: Kind, body: &T) -> Versioned<'_, T> {
    Versioned { api_version: API_VERSION, kind: kind.name(), body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_fields_come_first() {
        #[derive(Serialize)]
        struct Body {
            a: u8,
            kind_of: &'static str,
        }
        let json = serde_json::to_string(&versioned(Kind::Explanation, &Body { a: 1, kind_of: "x" })).unwrap();
        assert_eq!(json, r#"{"apiVersion":"mesh.dev/v1alpha1","kind":"Explanation","a":1,"kind_of":"x"}"#);
        let yaml = serde_saphyr::to_string(&versioned(Kind::ProxyStatus, &serde_json::json!({"b": [1]}))).unwrap();
        assert!(yaml.starts_with("apiVersion: mesh.dev/v1alpha1\nkind: ProxyStatus\nb:"), "{yaml}");
    }
}
