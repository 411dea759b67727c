//! What the router and its upgrade handlers (port-forward, pod proxy) share: the server state, the
//! body type and two helpers. Its own module so that those handlers need not import the router back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;

use super::admission::{AdmissionCall, ServiceRoutes};
use super::store::Store;

/// Response body: a full buffer or a stream (watch, proxy).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A denial rule set by the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForbidRule {
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`) or `*`.
    pub verb: String,
    /// Resource (`pods`, `pods/portforward`, `virtualservices`) or `*`.
    pub resource: String,
    /// Only requests in this namespace; `None`: every namespace and the cluster scope.
    pub namespace: Option<String>,
    /// Only cluster-scoped requests (lists across all namespaces, cluster-scoped types).
    pub cluster_scope_only: bool,
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    /// The objects.
    pub store: Store,
    /// The bearer token clients must send.
    pub token: String,
    /// The user name the token authenticates as (in 403 messages).
    pub user: String,
    /// The listening address.
    pub address: SocketAddr,
    /// Denial rules.
    pub rules: Mutex<Vec<ForbidRule>>,
    /// Port-forward targets: (namespace, pod, port) -> loopback address.
    pub forward_targets: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    /// pods/proxy targets: (namespace, pod, port) -> loopback address.
    pub proxy_targets: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    /// Every request seen: `GET /api/v1/pods?limit=500`.
    pub requests: Mutex<Vec<String>>,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Mutex<Duration>,
    /// Where webhook Services are served: (namespace, name, port) -> loopback address.
    pub service_routes: Mutex<ServiceRoutes>,
    /// The CA (PEM) trusted for webhooks whose caBundle is empty.
    pub webhook_ca: Mutex<Option<String>>,
    /// Every mutating webhook call, in order.
    pub admission_calls: Mutex<Vec<AdmissionCall>>,
    /// Compact the store right after the next list page that hands out a `continue` token.
    pub compact_after_page: Mutex<bool>,
}

/// Locks a mutex, recovering from poisoning (the data is plain).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}
