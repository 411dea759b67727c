//! Request handling: authentication, routing of Kubernetes API paths, CRUD, list and watch.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::admission;
use super::discovery;
use super::meta;
use super::portforward;
use super::proxy;
use super::resource::ResourceType;
use super::selector::Selectors;
use super::status::{self, ApiError};
use super::store::{self, Filter, Store, WatchStart};
use super::table::{self, IncludeObject};

pub use super::shared::{Body, ForbidRule, Shared, full, lock};

fn response(code: u16, content_type: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    if let Ok(v) = HeaderValue::from_str(&meta::uid()) {
        headers.insert("audit-id", v);
    }
    resp
}

/// A JSON response.
pub fn json_response(code: u16, value: &Value) -> Response<Body> {
    json_response_as(code, value, "application/json")
}

fn json_response_as(code: u16, value: &Value, content_type: &str) -> Response<Body> {
    let mut text = serde_json::to_vec(value).unwrap_or_default();
    text.push(b'\n');
    response(code, content_type, full(text))
}

/// The `Status` response for an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

fn text_response(code: u16, text: &str) -> Response<Body> {
    response(code, "text/plain; charset=utf-8", full(text.to_string()))
}

/// Decodes `%XX` escapes (and `+` as a space in query strings).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, in order (repeated keys kept).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

fn truthy(q: &BTreeMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// The parsed target of a resource request.
#[derive(Debug, Clone)]
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// For pods/proxy: the path after `proxy`.
    rest: String,
}

/// Entry point for every request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let line = format!("{} {}", req.method(), req.uri().path_and_query().map_or("", |p| p.as_str()));
    tracing::debug!(request = %line, "test apiserver");
    lock(&shared.requests).push(line);
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token);
    if !authorized {
        return Ok(error_response(&ApiError::unauthorized()));
    }
    Ok(route(shared, req).await.unwrap_or_else(|e| error_response(&e)))
}

fn accept(req: &Request<Incoming>) -> String {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = req.method() == Method::GET;
    let accept = accept(&req);
    let types = shared.store.types();
    match segs.as_slice() {
        ["version"] if get => return Ok(json_response(200, &discovery::version())),
        ["healthz" | "livez" | "readyz"] if get => return Ok(text_response(200, "ok")),
        ["api"] if get => {
            if let Some(v) = aggregated_version(&accept) {
                return Ok(aggregated_response(&discovery::aggregated(&types, true, v), v));
            }
            return Ok(json_response(200, &discovery::api_versions(&shared.address.to_string())));
        }
        ["apis"] if get => {
            if let Some(v) = aggregated_version(&accept) {
                return Ok(aggregated_response(&discovery::aggregated(&types, false, v), v));
            }
            return Ok(json_response(200, &discovery::api_group_list(&types)));
        }
        ["api", "v1"] if get => {
            return discovery::api_resource_list(&types, "", "v1")
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::no_resource);
        }
        ["apis", group] if get => {
            return discovery::api_group_doc(&types, group)
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::no_resource);
        }
        ["apis", group, version] if get => {
            return discovery::api_resource_list(&types, group, version)
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::no_resource);
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(text_response(404, "404 page not found\n")),
    };
    if !types.iter().any(|t| t.group == group && t.version == version) {
        return Ok(text_response(404, "404 page not found\n"));
    }
    let target = parse_target(&shared.store, group, version, rest)?;
    dispatch(shared, req, target).await
}

fn aggregated_version(accept: &str) -> Option<&'static str> {
    if !accept.contains("as=APIGroupDiscoveryList") {
        return None;
    }
    if accept.contains("v=v2;") || accept.contains("v=v2,") || accept.ends_with("v=v2") {
        Some("v2")
    } else if accept.contains("v=v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

fn aggregated_response(doc: &Value, version: &str) -> Response<Body> {
    let mut doc = doc.clone();
    doc["apiVersion"] = json!(format!("apidiscovery.k8s.io/{version}"));
    let mut resp = json_response_as(
        200,
        &doc,
        &format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
    );
    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn parse_target(store: &Store, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let find = |plural: &str| store.find_type(group, version, plural).ok_or_else(ApiError::no_resource);
    let target = |rt: ResourceType, namespace: Option<&str>, tail: &[&str]| -> Result<Target, ApiError> {
        let (name, subresource, rest) = match tail {
            [] => (None, None, String::new()),
            [name] => (Some(*name), None, String::new()),
            [name, sub, more @ ..] => (Some(*name), Some(*sub), more.join("/")),
        };
        if let Some(sub) = subresource
            && !rt.has_subresource(sub)
        {
            return Err(ApiError::no_resource());
        }
        if subresource.is_some_and(|s| s != "proxy") && !rest.is_empty() {
            return Err(ApiError::no_resource());
        }
        Ok(Target {
            rt,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: subresource.map(str::to_string),
            rest,
        })
    };
    match rest {
        // /api/v1/namespaces/<ns>/<plural>[/...], unless it is the namespace itself or its status.
        ["namespaces", ns, plural, tail @ ..] if group.is_empty() && *plural != "status" && *plural != "finalize" => {
            let rt = find(plural)?;
            if !rt.namespaced {
                return Err(ApiError::no_resource());
            }
            target(rt, Some(ns), tail)
        }
        ["namespaces", ns, plural, tail @ ..] if !group.is_empty() => {
            let rt = find(plural)?;
            if !rt.namespaced {
                return Err(ApiError::no_resource());
            }
            target(rt, Some(ns), tail)
        }
        [plural, tail @ ..] => {
            let rt = find(plural)?;
            if rt.namespaced && !tail.is_empty() {
                return Err(ApiError::no_resource());
            }
            target(rt, None, tail)
        }
        [] => Err(ApiError::no_resource()),
    }
}

fn verb_of(method: &Method, target: &Target, query: &BTreeMap<String, String>) -> &'static str {
    if target.subresource.as_deref() == Some("portforward") {
        return "create";
    }
    match (method.as_str(), target.name.is_some()) {
        ("GET", false) if truthy(query, "watch") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

fn check_forbidden(shared: &Shared, verb: &str, target: &Target) -> Result<(), ApiError> {
    let rt = &target.rt;
    let resource = match &target.subresource {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    let qualified = match &target.subresource {
        Some(s) => format!("{}/{s}", status::qualified(&rt.group, &rt.plural)),
        None => status::qualified(&rt.group, &rt.plural),
    };
    let ns = target.namespace.as_deref();
    let denied = lock(&shared.rules).iter().any(|r| {
        (r.verb == "*" || r.verb == verb)
            && (r.resource == "*" || r.resource == resource || r.resource == qualified)
            && match (&r.namespace, ns) {
                (_, Some(_)) if r.cluster_scope_only => false,
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
            }
    });
    if denied {
        return Err(ApiError::forbidden(
            &shared.user,
            verb,
            &rt.group,
            &resource,
            ns,
            target.name.as_deref().unwrap_or(""),
        ));
    }
    Ok(())
}

async fn body_bytes(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let limited = http_body_util::Limited::new(req.into_body(), 64 * 1024 * 1024);
    limited
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("json parse error: {e}")))
}

async fn dispatch(shared: Arc<Shared>, req: Request<Incoming>, target: Target) -> Result<Response<Body>, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let query: BTreeMap<String, String> = pairs.iter().cloned().collect();
    let method = req.method().clone();
    let verb = verb_of(&method, &target, &query);
    if target.subresource.as_deref() == Some("portforward") {
        // Like Kubernetes 1.35+ (AuthorizePodWebsocketUpgradeCreatePermission): the WebSocket
        // upgrade is a GET, authorized as `get`, and `create` is checked too.
        check_forbidden(&shared, "get", &target)?;
    }
    check_forbidden(&shared, verb, &target)?;
    let rt = target.rt.clone();
    let ns = target.namespace.clone().unwrap_or_default();
    let accept = accept(&req);

    match (target.subresource.as_deref(), target.name.clone()) {
        (Some("portforward"), Some(name)) => {
            shared.store.get(&rt, &ns, &name)?;
            return portforward::upgrade(shared.clone(), req, &ns, &name, &pairs);
        }
        (Some("proxy"), Some(name)) => {
            return proxy::forward(shared.clone(), req, &rt, &ns, &name, &target.rest).await;
        }
        _ => {}
    }
    let status_only = target.subresource.as_deref() == Some("status");
    match (method.as_str(), target.name.clone()) {
        ("GET", None) if truthy(&query, "watch") => {
            let table = accept.contains("as=Table").then(|| include_object(&query));
            watch(&shared, &rt, target.namespace.clone(), &query, table)
        }
        ("GET", None) => list(&shared, &rt, target.namespace.clone(), &query, &accept),
        ("GET", Some(name)) => {
            let obj = store::present(&rt, &shared.store.get(&rt, &ns, &name)?);
            Ok(single(&rt, obj, &accept, &query))
        }
        ("POST", None) => {
            let body = parse_json(&body_bytes(req).await?)?;
            check_body_kind(&rt, &body)?;
            let field_manager = query.get("fieldManager").cloned();
            let body = match admission::admit_create(&shared, &rt, &ns, body, dry_run(&query), field_manager).await {
                Ok(admitted) => admitted,
                Err(rejected) => return Ok(json_response(rejected.code, &rejected.status)),
            };
            if dry_run(&query) {
                return Ok(json_response(201, &store::present(&rt, &body)));
            }
            let created = shared.store.create(&rt, &ns, body)?;
            Ok(json_response(201, &store::present(&rt, &created)))
        }
        ("PUT", Some(name)) => {
            let body = parse_json(&body_bytes(req).await?)?;
            check_body_kind(&rt, &body)?;
            let updated = shared.store.update(&rt, &ns, &name, body, status_only)?;
            Ok(json_response(200, &store::present(&rt, &updated)))
        }
        ("PATCH", Some(name)) => {
            let content_type =
                req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = body_bytes(req).await?;
            patch(&shared, &rt, &ns, &name, &content_type, &body, &query, status_only)
        }
        ("DELETE", Some(name)) => {
            let deleted = shared.store.delete(&rt, &ns, &name)?;
            if rt.custom || rt.plural == "pods" {
                Ok(json_response(200, &store::present(&rt, &deleted)))
            } else {
                let uid = deleted.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                Ok(json_response(200, &status::success(&rt.group, &rt.plural, &name, uid)))
            }
        }
        ("DELETE", None) => {
            let filter = Filter {
                namespace: target.namespace.clone(),
                selectors: Selectors::from_query(&query, &rt.field_selectors)?,
            };
            let (items, _) = shared.store.list(&rt, &filter);
            let mut deleted = Vec::new();
            for item in items {
                let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
                if let Ok(d) = shared.store.delete(&rt, &item_ns, &name) {
                    deleted.push(d);
                }
            }
            let items: Vec<Arc<[u8]>> = deleted.iter().map(|o| store::encode_item(&rt, o)).collect();
            let body = list_body_encoded(&rt, &items, shared.store.resource_version(), &Page::default());
            Ok(response(200, "application/json", full(body)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn dry_run(query: &BTreeMap<String, String>) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

fn check_body_kind(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or the kind {kind:?} does not match {:?}",
            body.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

fn include_object(query: &BTreeMap<String, String>) -> IncludeObject {
    match query.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

const TABLE_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn single(rt: &ResourceType, obj: Value, accept: &str, query: &BTreeMap<String, String>) -> Response<Body> {
    if accept.contains("as=Table") {
        return json_response_as(200, &table::render(rt, &[obj], None, include_object(query)), TABLE_TYPE);
    }
    if accept.contains("as=PartialObjectMetadata") {
        return json_response_as(
            200,
            &json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata")}),
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        );
    }
    json_response(200, &obj)
}

/// Where a paginated list stopped (`limit` + `continue`, as the real server encodes them).
#[derive(Debug, Default)]
struct Page {
    /// The `continue` token, when more items follow.
    next: Option<String>,
    /// `remainingItemCount`, when more items follow.
    remaining: Option<usize>,
}

impl Page {
    /// `ListMeta` of a typed list: resourceVersion, continue, remainingItemCount (Go field order).
    fn typed_metadata(&self, rv: u64) -> Value {
        let mut md = serde_json::Map::new();
        md.insert("resourceVersion".into(), json!(rv.to_string()));
        if let Some(next) = &self.next {
            md.insert("continue".into(), json!(next));
        }
        if let Some(n) = self.remaining {
            md.insert("remainingItemCount".into(), json!(n));
        }
        Value::Object(md)
    }
}

/// Where a page starts (`continue`) and how long it is (`limit`), as the real server reads them.
struct PageQuery {
    /// The key the previous page ended with.
    after: Option<String>,
    /// The resourceVersion of the list the token continues.
    rv: Option<u64>,
    limit: Option<usize>,
}

impl PageQuery {
    fn parse(query: &BTreeMap<String, String>) -> Result<PageQuery, ApiError> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let (mut after, mut rv) = (None, None);
        if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
            let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
            let raw = engine.decode(token).map_err(|e| bad(&e.to_string()))?;
            let doc: Value = serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
            let start = doc.get("start").and_then(Value::as_str).ok_or_else(|| bad("no start key"))?;
            after = Some(start.trim_end_matches('\u{0}').to_string());
            rv = Some(doc.get("rv").and_then(Value::as_u64).ok_or_else(|| bad("no resource version"))?);
        }
        let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
        Ok(PageQuery { after, rv, limit })
    }
}

impl Page {
    /// The page's `continue` token and `remainingItemCount` (none when the list is complete).
    fn of<T>(list: &store::ListPage<T>) -> Page {
        use base64::Engine;
        let Some(last) = &list.last else { return Page::default() };
        let token = json!({"v": "meta.k8s.io/v1", "rv": list.rv, "start": format!("{last}\u{0}")});
        let next = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default());
        Page { next: Some(next), remaining: Some(list.remaining) }
    }
}

/// The list envelope around items already encoded (so a list is never built as one `Value`), shaped
/// like the real server's: typed lists `kind, apiVersion, metadata, items`; custom resources' in
/// sorted key order, with `continue` always present.
fn list_body_encoded(rt: &ResourceType, items: &[Arc<[u8]>], rv: u64, page: &Page) -> Vec<u8> {
    let list_kind = json!(format!("{}List", rt.kind));
    let api_version = json!(rt.api_version());
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 256);
    let items_array = |out: &mut Vec<u8>| {
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.push(b']');
    };
    let put = |out: &mut Vec<u8>, key: &str, v: &Value| {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    };
    if rt.custom {
        let mut md = serde_json::Map::new();
        md.insert("continue".into(), json!(page.next.clone().unwrap_or_default()));
        if let Some(n) = page.remaining {
            md.insert("remainingItemCount".into(), json!(n));
        }
        md.insert("resourceVersion".into(), json!(rv.to_string()));
        put(&mut out, "{\"apiVersion\":", &api_version);
        out.extend_from_slice(b",\"items\":");
        items_array(&mut out);
        put(&mut out, ",\"kind\":", &list_kind);
        put(&mut out, ",\"metadata\":", &Value::Object(md));
        out.push(b'}');
    } else {
        put(&mut out, "{\"kind\":", &list_kind);
        put(&mut out, ",\"apiVersion\":", &api_version);
        put(&mut out, ",\"metadata\":", &page.typed_metadata(rv));
        out.extend_from_slice(b",\"items\":");
        items_array(&mut out);
        out.push(b'}');
    }
    out.push(b'\n');
    out
}

fn list(
    shared: &Shared,
    rt: &ResourceType,
    namespace: Option<String>,
    query: &BTreeMap<String, String>,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter { namespace, selectors: Selectors::from_query(query, &rt.field_selectors)? };
    let pq = PageQuery::parse(query)?;
    if pq.rv.is_some_and(|rv| shared.store.compacted(rv)) {
        return Err(ApiError::continue_expired());
    }
    let (after, limit) = (pq.after.as_deref(), pq.limit);
    if accept.contains("as=Table") {
        let listed = shared.store.list_values(rt, &filter, after, limit);
        let page = Page::of(&listed);
        let items: Vec<Value> = listed.items.into_iter().map(|o| store::present_owned(rt, o)).collect();
        let mut t = table::render(rt, &items, Some(listed.rv), include_object(query));
        t["metadata"] = page.typed_metadata(listed.rv);
        return Ok(json_response_as(200, &t, TABLE_TYPE));
    }
    if accept.contains("as=PartialObjectMetadataList") {
        let listed = shared.store.list_values(rt, &filter, after, limit);
        let page = Page::of(&listed);
        let items: Vec<Value> = listed
            .items
            .iter()
            .map(|o| {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": store::present(rt, o).get("metadata")})
            })
            .collect();
        let mut doc = serde_json::Map::new();
        doc.insert("kind".into(), json!("PartialObjectMetadataList"));
        doc.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
        doc.insert("metadata".into(), page.typed_metadata(listed.rv));
        doc.insert("items".into(), Value::Array(items));
        return Ok(json_response_as(
            200,
            &Value::Object(doc),
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        ));
    }
    let listed = shared.store.list_encoded(rt, &filter, after, limit);
    if listed.last.is_some() && std::mem::take(&mut *lock(&shared.compact_after_page)) {
        shared.store.compact();
    }
    let body = list_body_encoded(rt, &listed.items, listed.rv, &Page::of(&listed));
    Ok(response(200, "application/json", full(body)))
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
    query: &BTreeMap<String, String>,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal the JSON patch: {e}")))?;
            let out = shared.store.modify(rt, ns, name, status_only, |obj| {
                json_patch::patch(obj, &ops).map_err(|e| ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: format!("the server rejected our request due to an error in our request: {e}"),
                    details: None,
                })
            })?;
            Ok(json_response(200, &store::present(rt, &out)))
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let p = parse_json(body)?;
            let want_rv = p.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            let out = shared.store.modify(rt, ns, name, status_only, |obj| {
                if let Some(rv) = &want_rv
                    && obj.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv.as_str())
                {
                    return Err(ApiError::conflict(&rt.group, &rt.plural, name));
                }
                json_patch::merge(obj, &p);
                Ok(())
            })?;
            Ok(json_response(200, &store::present(rt, &out)))
        }
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            if query.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                    details: None,
                });
            }
            let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("apply body: {e}")))?;
            let applied: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
            };
            check_body_kind(rt, &applied)?;
            match shared.store.get(rt, ns, name) {
                Err(e) if e.code == 404 && !status_only => {
                    let mut obj = applied;
                    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        md.insert("name".into(), json!(name));
                    }
                    let created = shared.store.create(rt, ns, obj)?;
                    Ok(json_response(201, &store::present(rt, &created)))
                }
                Err(e) => Err(e),
                Ok(_) => {
                    let out = shared.store.modify(rt, ns, name, status_only, |obj| {
                        json_patch::merge(obj, &applied);
                        Ok(())
                    })?;
                    Ok(json_response(200, &store::present(rt, &out)))
                }
            }
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn watch_start(query: &BTreeMap<String, String>) -> Result<WatchStart, ApiError> {
    if truthy(query, "sendInitialEvents") {
        return Ok(WatchStart::Current);
    }
    match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => Ok(WatchStart::Current),
        Some(rv) => rv
            .parse::<u64>()
            .map(WatchStart::After)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}"))),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut md = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": md}))
}

fn watch(
    shared: &Shared,
    rt: &ResourceType,
    namespace: Option<String>,
    query: &BTreeMap<String, String>,
    table: Option<IncludeObject>,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter { namespace, selectors: Selectors::from_query(query, &rt.field_selectors)? };
    let start = watch_start(query)?;
    let bookmarks = truthy(query, "allowWatchBookmarks");
    let initial_end = truthy(query, "sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let interval = *lock(&shared.bookmark_interval);
    let store::WatchFeed { initial, rv: start_rv, live: mut rx } = shared.store.watch(rt, &filter, start);
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let rt = rt.clone();
    tokio::spawn(async move {
        // Objects as sent: the object itself, or a one-row Table when kubectl asked for tables.
        let shape = |obj: &Value, rv: u64| match table {
            Some(include) => table::render(&rt, &[store::present(&rt, obj)], Some(rv), include),
            None => store::present(&rt, obj),
        };
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        let mut last_rv = start_rv;
        for ev in &initial {
            if let Some(kind) = store::visible(&filter, ev)
                && !send(event_line(kind.as_str(), &shape(&ev.object, ev.rv))).await
            {
                return;
            }
            last_rv = last_rv.max(ev.rv);
        }
        if initial_end && !send(bookmark(&rt, last_rv, true)).await {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.reset();
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if !send(bookmark(&rt, last_rv, false)).await {
                        return;
                    }
                }
                ev = rx.recv() => {
                    let Ok(ev) = ev else { return };
                    if ev.rv <= last_rv || ev.group != rt.group || ev.plural != rt.plural {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(kind) = store::visible(&filter, &ev)
                        && !send(event_line(kind.as_str(), &shape(&ev.object, ev.rv))).await
                    {
                        return;
                    }
                }
            }
        }
    });
    let body = StreamBody::new(ReceiverStream::new(body_rx)).boxed();
    Ok(response(200, "application/json", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded_pods() -> Result<(Store, ResourceType), ApiError> {
        let store = Store::new();
        let rt = ResourceType::new("", "v1", "Pod", "pods", true).with_status();
        store.register(rt.clone());
        // "a" sorts before "a-b" as a namespace, but "a-b/..." before "a/..." as a key.
        for (ns, name) in [("a", "p1"), ("a-b", "p0"), ("a", "p0"), ("b", "p2"), ("a-b", "p3")] {
            store.put(&rt, json!({"metadata": {"name": name, "namespace": ns}, "spec": {"x": 1}}))?;
        }
        Ok((store, rt))
    }

    #[test]
    fn pagination_walks_every_item_once_in_key_order() -> Result<(), ApiError> {
        let (store, rt) = seeded_pods()?;
        let mut query = BTreeMap::from([("limit".to_string(), "2".to_string())]);
        let mut seen = Vec::new();
        for round in 0..10 {
            let pq = PageQuery::parse(&query)?;
            let listed = store.list_values(&rt, &Filter::default(), pq.after.as_deref(), pq.limit);
            seen.extend(listed.items.iter().map(store::list_key));
            let page = Page::of(&listed);
            match page.next {
                Some(next) => {
                    assert_eq!(page.remaining, Some(5 - seen.len()), "round {round}");
                    query.insert("continue".into(), next);
                }
                None => break,
            }
        }
        assert_eq!(seen, vec!["a-b/p0", "a-b/p3", "a/p0", "a/p1", "b/p2"]);
        query.insert("continue".into(), "!!".into());
        assert_eq!(PageQuery::parse(&query).err().map(|e| e.code), Some(400));
        Ok(())
    }

    #[test]
    fn encoded_list_is_the_typed_list_document() -> Result<(), Box<dyn std::error::Error>> {
        let (store, rt) = seeded_pods()?;
        let listed = store.list_encoded(&rt, &Filter::default(), None, Some(2));
        let page = Page::of(&listed);
        let doc: Value = serde_json::from_slice(&list_body_encoded(&rt, &listed.items, listed.rv, &page))?;
        let keys: Vec<&String> = doc.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["kind", "apiVersion", "metadata", "items"]);
        assert_eq!(doc["kind"], "PodList");
        assert_eq!(doc["metadata"]["remainingItemCount"], 3);
        assert_eq!(doc["metadata"]["resourceVersion"], listed.rv.to_string());
        let first = &doc["items"][0];
        assert_eq!(first, &store::list_item(&rt, &store.get(&rt, "a-b", "p0")?));
        assert!(first.get("kind").is_none() && first.get("apiVersion").is_none(), "{first}");
        // A changed object is encoded again.
        store.put(&rt, json!({"metadata": {"name": "p0", "namespace": "a-b"}, "spec": {"x": 2}}))?;
        let again = store.list_encoded(&rt, &Filter::default(), None, Some(1));
        let item: Value = serde_json::from_slice(&again.items[0])?;
        assert_eq!(item["spec"]["x"], 2);
        Ok(())
    }

    #[test]
    fn encoded_custom_list_keeps_sorted_keys_and_continue() -> Result<(), Box<dyn std::error::Error>> {
        let store = Store::new();
        let mut rt = ResourceType::new("networking.istio.io", "v1", "VirtualService", "virtualservices", true);
        rt.custom = true;
        store.register(rt.clone());
        store.put(&rt, json!({"metadata": {"name": "r", "namespace": "n"}, "spec": {"b": 1, "a": 2}}))?;
        let listed = store.list_encoded(&rt, &Filter::default(), None, None);
        let doc: Value = serde_json::from_slice(&list_body_encoded(&rt, &listed.items, listed.rv, &Page::of(&listed)))?;
        let keys: Vec<&String> = doc.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["apiVersion", "items", "kind", "metadata"]);
        assert_eq!(doc["metadata"]["continue"], "");
        assert_eq!(doc["items"][0]["kind"], "VirtualService");
        let spec: Vec<&String> = doc["items"][0]["spec"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(spec, ["a", "b"]);
        Ok(())
    }

    #[test]
    fn query_pairs_decode() {
        let q = query_pairs(Some("labelSelector=app%3Dfoo%2Cversion%20in%20%28v1%29&ports=80%2C1234&watch=1"));
        assert_eq!(q[0], ("labelSelector".to_string(), "app=foo,version in (v1)".to_string()));
        assert_eq!(q[1].1, "80,1234");
        assert_eq!(percent_decode("a%", false), "a%");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
