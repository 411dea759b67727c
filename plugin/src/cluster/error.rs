//! Errors of calls to a cluster, written for the person who has to act on them: what was asked
//! (`<verb> <resource> in <namespace>`), why it failed (the API server's message, never a debug dump),
//! and for 401/403 the exact Role rule that grants it.

use std::fmt;
use std::time::Duration;

/// One API request, named the way RBAC names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The RBAC verb (`get`, `list`, `create`).
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource, with its subresource (`pods`, `pods/portforward`, `virtualservices`).
    pub resource: String,
    /// The namespace (`None`: all namespaces or cluster scope).
    pub namespace: Option<String>,
    /// The object's name, when one object is asked for.
    pub name: Option<String>,
}

impl Op {
    /// A request to the core API group.
    pub fn new(verb: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) -> Op {
        Op {
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    /// The same request in another API group.
    pub fn in_group(mut self, group: &str) -> Op {
        self.group = group.into();
        self
    }

    /// The verbs a Role must grant for this request: a port-forward needs `get` and `create` on
    /// `pods/portforward` (Kubernetes 1.35+ checks `create` for the WebSocket upgrade too).
    pub fn rule_verbs(&self) -> Vec<&str> {
        if self.resource == "pods/portforward" || self.resource == "pods/exec" || self.resource == "pods/attach" {
            vec!["get", "create"]
        } else {
            vec![self.verb.as_str()]
        }
    }

    /// The Role (or ClusterRole, for all namespaces) rule that grants this request.
    pub fn rule(&self) -> String {
        let verbs: Vec<String> = self.rule_verbs().iter().map(|v| format!("{v:?}")).collect();
        let kind = if self.namespace.is_some() { "Role" } else { "ClusterRole" };
        let scope = match &self.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => String::new(),
        };
        format!(
            "a {kind}{scope} with the rule {{apiGroups: [{:?}], resources: [{:?}], verbs: [{}]}}",
            self.group,
            self.resource,
            verbs.join(", ")
        )
    }

    /// Maps a kube error of this request to a [`ClusterError`].
    pub fn error(&self, e: kube::Error) -> ClusterError {
        match e {
            kube::Error::Api(status) => {
                let reason = if !status.message.is_empty() {
                    status.message.clone()
                } else if !status.reason.is_empty() {
                    status.reason.clone()
                } else {
                    http_reason(status.code)
                };
                ClusterError::Api(Box::new(ApiFailure { op: self.clone(), code: status.code, reason }))
            }
            // A refused WebSocket upgrade carries only the status code.
            kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(code))
                if code.is_client_error() || code.is_server_error() =>
            {
                let reason = http_reason(code.as_u16());
                ClusterError::Api(Box::new(ApiFailure { op: self.clone(), code: code.as_u16(), reason }))
            }
            other => ClusterError::Failed { what: self.to_string(), reason: other.to_string() },
        }
    }
}

fn http_reason(code: u16) -> String {
    let text = http::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("error");
    format!("HTTP {code} {text} (the API server gave no message)")
}

impl fmt::Display for Op {
    /// `get pods/foo in namespace shop`, `list pods in all namespaces`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = match &self.group {
            g if g.is_empty() => self.resource.clone(),
            g => format!("{}.{g}", self.resource),
        };
        write!(f, "{} {resource}", self.verb)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " in all namespaces"),
        }
    }
}

/// The API server refused or failed one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// What was asked.
    pub op: Op,
    /// The HTTP status code.
    pub code: u16,
    /// The API server's message (its `Status.message`), or the HTTP reason.
    pub reason: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ApiFailure { op, code, reason } = self;
        write!(f, "{op}: {reason}")?;
        match code {
            401 => write!(
                f,
                "; the API server did not accept the credentials (check the kubeconfig's user, --user or --as); \
                 once authenticated the user needs {}",
                op.rule()
            ),
            403 => write!(f, "; missing RBAC permission: grant it with {}", op.rule()),
            503 if op.resource == "pods/proxy" => write!(
                f,
                "; the API server's pod proxy cannot reach that port (Istio's Envoy admin listens on 127.0.0.1 \
                 only): use --admin-via port-forward"
            ),
            _ => Ok(()),
        }
    }
}

/// What went wrong talking to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable cluster configuration (kubeconfig unreadable, unknown context, ...).
    #[error("{what}: {reason}")]
    Config {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The API server answered with an error status.
    #[error("{0}")]
    Api(Box<ApiFailure>),
    /// The call did not finish in time.
    #[error("{what}: no answer within {} (raise it with --request-timeout)", mesh_core::duration::format(*timeout))]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// Any other failure (connection, stream, protocol).
    #[error("{what}: {reason}")]
    Failed {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

impl ClusterError {
    /// The HTTP status of an API failure (`None` for the other kinds).
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api(a) => Some(a.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    /// Every error text a user can see: no debug dumps (`Some(`, `Status {`).
    fn all_texts() -> Vec<String> {
        let pf = Op::new("create", "pods/portforward", Some("shop"), Some("web-1"));
        let list = Op::new("list", "pods", None, None);
        let vs = Op::new("get", "virtualservices", Some("shop"), Some("reviews")).in_group("networking.istio.io");
        let proxy = Op::new("get", "pods/proxy", Some("shop"), Some("web-1"));
        let forbidden = "pods \"web-1\" is forbidden: User \"bob\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"shop\"";
        let switch = |c: u16| {
            kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
                http::StatusCode::from_u16(c).unwrap(),
            ))
        };
        vec![
            pf.error(status(403, "Forbidden", forbidden)).to_string(),
            pf.error(switch(403)).to_string(),
            pf.error(switch(400)).to_string(),
            list.error(status(401, "Unauthorized", "Unauthorized")).to_string(),
            list.error(status(400, "BadRequest", "")).to_string(),
            vs.error(status(404, "NotFound", "")).to_string(),
            proxy
                .error(status(
                    503,
                    "ServiceUnavailable",
                    "error trying to reach service: dial tcp 10.0.0.1:15000: connect: connection refused",
                ))
                .to_string(),
            list.error(kube::Error::LinesCodecMaxLineLengthExceeded).to_string(),
            ClusterError::Timeout { what: list.to_string(), timeout: Duration::from_secs(20) }.to_string(),
        ]
    }

    #[test]
    fn no_debug_output_in_error_texts() {
        for text in all_texts() {
            assert!(!text.contains("Some(") && !text.contains("Status {") && !text.contains("None"), "{text}");
        }
    }

    #[test]
    fn texts_name_the_request_and_the_rule() {
        let t = all_texts();
        assert_eq!(
            t[0],
            "create pods/portforward web-1 in namespace shop: pods \"web-1\" is forbidden: User \"bob\" cannot create \
             resource \"pods/portforward\" in API group \"\" in the namespace \"shop\"; missing RBAC permission: grant it \
             with a Role in namespace shop with the rule {apiGroups: [\"\"], resources: [\"pods/portforward\"], verbs: \
             [\"get\", \"create\"]}"
        );
        // A refused WebSocket upgrade has no Status body: the reason still says something.
        assert!(t[1].contains(": HTTP 403 Forbidden (the API server gave no message); missing RBAC"), "{}", t[1]);
        assert!(t[1].contains("verbs: [\"get\", \"create\"]"), "{}", t[1]);
        assert!(
            t[3].starts_with("list pods in all namespaces: Unauthorized; the API server did not accept"),
            "{}",
            t[3]
        );
        assert!(
            t[3].ends_with("a ClusterRole with the rule {apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"list\"]}"),
            "{}",
            t[3]
        );
        assert_eq!(t[4], "list pods in all namespaces: BadRequest");
        assert_eq!(t[5], "get virtualservices.networking.istio.io reviews in namespace shop: NotFound");
        assert!(t[6].ends_with("use --admin-via port-forward"), "{}", t[6]);
        assert_eq!(t[8], "list pods in all namespaces: no answer within 20s (raise it with --request-timeout)");
    }
}
