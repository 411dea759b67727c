//! The test API server seen through kube-rs (a kube 5 Client built from the written kubeconfig):
//! get, list with selectors, watch, create, patch, status, delete, errors, discovery, port-forward.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::{Api, Client};
use mesh_test_apiserver::TestApiServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(10);

fn pod(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.7"}})
}

async fn client_for(server: &TestApiServer) -> Result<Client> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path)?;
    let kc = kube::config::Kubeconfig::read_from(&path)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn api_error(err: kube::Error) -> Result<(u16, String, String)> {
    match err {
        kube::Error::Api(status) => Ok((status.code, status.reason.clone(), status.message.clone())),
        other => Err(anyhow!("expected an API error, got {other:#}")),
    }
}

#[tokio::test]
async fn get_list_selectors_and_not_found() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(pod("foo", "foo", "foo"))?;
    server.put(pod("foo", "bar", "bar"))?;
    server.put(pod("other", "baz", "foo"))?;
    let client = client_for(&server).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "foo");

    let foo = tokio::time::timeout(STEP, pods.get("foo")).await??;
    assert_eq!(foo.metadata.namespace.as_deref(), Some("foo"));
    assert!(foo.metadata.uid.is_some() && foo.metadata.resource_version.is_some());
    assert_eq!(foo.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    let selected = pods.list(&ListParams::default().labels("app=foo")).await?;
    let names: Vec<_> = selected.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["foo".to_string()]);
    assert!(selected.metadata.resource_version.is_some());

    let all: Api<Pod> = Api::all(client.clone());
    let everywhere = all.list(&ListParams::default().labels("app=foo")).await?;
    assert_eq!(everywhere.items.len(), 2);
    let by_field = all.list(&ListParams::default().fields("metadata.namespace=other")).await?;
    assert_eq!(by_field.items.len(), 1);
    let bad_field = all.list(&ListParams::default().fields("spec.nope=x")).await.err().context("bad field selector")?;
    assert_eq!(api_error(bad_field)?.0, 400);

    let missing = pods.get("nonexistent").await.err().context("get of a missing pod must fail")?;
    assert_eq!(api_error(missing)?, (404, "NotFound".to_string(), "pods \"nonexistent\" not found".to_string()));

    let namespaces: Api<Namespace> = Api::all(client);
    let ns_names: Vec<_> =
        namespaces.list(&ListParams::default()).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
    for want in ["default", "foo", "other", "kube-system"] {
        assert!(ns_names.iter().any(|n| n == want), "namespace {want} missing from {ns_names:?}");
    }
    Ok(())
}

#[tokio::test]
async fn create_patch_status_delete_and_conflicts() -> Result<()> {
    let server = TestApiServer::start()?;
    let client = client_for(&server).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let new: Pod = serde_json::from_value(pod("default", "web", "web"))?;
    let created = pods.create(&PostParams::default(), &new).await?;
    let rv1: u64 = created.metadata.resource_version.clone().context("rv")?.parse()?;
    // Like the real server, create ignores the posted status: a new pod is Pending.
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    let again = pods.create(&PostParams::default(), &new).await.err().context("second create")?;
    assert_eq!(api_error(again)?.0, 409);

    let patched = pods
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"version": "v2"}}})))
        .await?;
    let rv2: u64 = patched.metadata.resource_version.clone().context("rv")?.parse()?;
    assert!(rv2 > rv1, "resourceVersion must increase: {rv1} then {rv2}");
    assert_eq!(patched.metadata.labels.as_ref().and_then(|l| l.get("version")).map(String::as_str), Some("v2"));

    let json_patched = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(
                json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]),
            )?),
        )
        .await?;
    assert_eq!(json_patched.metadata.annotations.and_then(|a| a.get("a").cloned()).as_deref(), Some("b"));

    let applied = pods
        .patch(
            "web",
            &PatchParams::apply("mesh-test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"applied": "yes"}}}),
            ),
        )
        .await?;
    assert_eq!(applied.metadata.labels.as_ref().and_then(|l| l.get("applied")).map(String::as_str), Some("yes"));

    let with_status = pods
        .patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}})))
        .await?;
    assert_eq!(with_status.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    // A replace with a stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.metadata.labels = None;
    let conflict = pods.replace("web", &PostParams::default(), &stale).await.err().context("stale replace")?;
    let (code, reason, message) = api_error(conflict)?;
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{message}");

    pods.delete("web", &DeleteParams::default()).await?;
    assert_eq!(api_error(pods.get("web").await.err().context("deleted")?)?.0, 404);

    let invalid: Pod = serde_json::from_value(json!({"metadata": {}, "spec": {"containers": []}}))?;
    let (code, reason, message) =
        api_error(pods.create(&PostParams::default(), &invalid).await.err().context("no name")?)?;
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("metadata.name: Required value"), "{message}");

    let in_missing_ns: Api<Pod> = Api::namespaced(client, "nowhere");
    let (code, _, message) = api_error(in_missing_ns.create(&PostParams::default(), &new).await.err().context("ns")?)?;
    assert_eq!((code, message.as_str()), (404, "namespaces \"nowhere\" not found"));
    Ok(())
}

#[tokio::test]
async fn watcher_sees_adds_changes_and_deletes() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(pod("foo", "first", "foo"))?;
    let client = client_for(&server).await?;
    let pods: Api<Pod> = Api::namespaced(client, "foo");
    let mut stream = watcher(pods, watcher::Config::default().labels("app=foo")).boxed();

    let mut seen_initial = Vec::new();
    loop {
        match tokio::time::timeout(STEP, stream.try_next()).await?? {
            Some(watcher::Event::InitApply(p)) => seen_initial.push(p.metadata.name.unwrap_or_default()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => bail!("watch ended early"),
        }
    }
    assert_eq!(seen_initial, vec!["first".to_string()]);

    server.put(pod("foo", "second", "foo"))?;
    server.put(pod("foo", "unrelated", "bar"))?;
    server.remove("v1", "Pod", "foo", "first").context("remove")?;
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    while applied.is_empty() || deleted.is_empty() {
        match tokio::time::timeout(STEP, stream.try_next()).await?? {
            Some(watcher::Event::Apply(p)) => applied.push(p.metadata.name.unwrap_or_default()),
            Some(watcher::Event::Delete(p)) => deleted.push(p.metadata.name.unwrap_or_default()),
            Some(_) => {}
            None => bail!("watch ended early"),
        }
    }
    assert_eq!(applied, vec!["second".to_string()], "the app=bar pod must not be seen");
    assert_eq!(deleted, vec!["first".to_string()]);
    Ok(())
}

#[tokio::test]
async fn istio_objects_discovery_and_forbidden() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bar", "namespace": "foo"},
        "spec": {"hosts": ["bar-service.foo.svc.cluster.local"]}}))?;
    let client = client_for(&server).await?;

    let discovery = kube::Discovery::new(client.clone()).run().await?;
    let group = discovery.get("networking.istio.io").context("networking.istio.io not discovered")?;
    assert_eq!(group.preferred_version_or_latest(), "v1");
    let (vs, caps) = group.recommended_kind("VirtualService").context("VirtualService not discovered")?;
    assert_eq!(vs.plural, "virtualservices");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    for version in ["v1", "v1beta1", "v1alpha3"] {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", version, "VirtualService"));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "foo", &ar);
        let list = api.list(&ListParams::default()).await?;
        assert_eq!(list.items.len(), 1, "{version}");
        assert_eq!(
            list.items[0].types.as_ref().map(|t| t.api_version.clone()),
            Some(format!("networking.istio.io/{version}"))
        );
    }

    server.forbid("list", "pods", Some("foo"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "foo");
    let (code, reason, message) = api_error(pods.list(&ListParams::default()).await.err().context("forbidden")?)?;
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "pods is forbidden: User \"admin\" cannot list resource \"pods\" in API group \"\" in the namespace \"foo\""
    );
    // Other namespaces stay allowed.
    Api::<Pod>::namespaced(client, "default").list(&ListParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn wrong_token_is_unauthorized() -> Result<()> {
    let server = TestApiServer::start()?;
    let yaml = server.kubeconfig_yaml().replace(server.token(), "not-the-token");
    let kc = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    let pods: Api<Pod> = Api::all(Client::try_from(cfg)?);
    let (code, reason, _) = api_error(pods.list(&ListParams::default()).await.err().context("401")?)?;
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    Ok(())
}

async fn echo_server() -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0_u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

#[tokio::test]
async fn portforward_reaches_the_mapped_loopback_port() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(pod("foo", "foo", "foo"))?;
    let (addr, echo) = echo_server().await?;
    server.map_pod_localhost_port("foo", "foo", 15000, addr);
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await?, "foo");

    let mut pf = tokio::time::timeout(STEP, pods.portforward("foo", &[15000, 15001])).await??;
    let mut stream = pf.take_stream(15000).context("no stream for 15000")?;
    stream.write_all(b"hello through the tunnel").await?;
    let mut buf = vec![0_u8; 24];
    tokio::time::timeout(STEP, stream.read_exact(&mut buf)).await??;
    assert_eq!(&buf, b"hello through the tunnel");

    // An unmapped port reports an error on its error channel, like the kubelet.
    let err = tokio::time::timeout(STEP, pf.take_error(15001).context("no error future")?).await?;
    let err = err.context("expected an error message for the unmapped port")?;
    assert!(err.contains("error forwarding port 15001 to pod foo_foo"), "{err}");
    drop(stream);
    pf.abort();
    echo.abort();

    let forbidden = {
        server.forbid("create", "pods/portforward", None);
        pods.portforward("foo", &[15000]).await.err().context("forbidden port-forward")?
    };
    assert!(
        format!("{forbidden:#}").contains("403") || matches!(forbidden, kube::Error::UpgradeConnection(_)),
        "{forbidden:#}"
    );
    Ok(())
}

#[tokio::test]
async fn streaming_list_watch_pagination_generate_name() -> Result<()> {
    let server = TestApiServer::start()?;
    for i in 0..5 {
        server.put(pod("foo", &format!("p{i}"), "foo"))?;
    }
    let client = client_for(&server).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "foo");

    // Pages of two, then the rest via `continue`.
    let first = pods.list(&ListParams::default().limit(2)).await?;
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().context("continue token")?;
    let rest = pods.list(&ListParams::default().limit(10).continue_token(&token)).await?;
    let names: Vec<_> = rest.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["p2", "p3", "p4"]);

    // kube-rs's watcher with streaming lists (sendInitialEvents + the initial-events-end bookmark).
    let mut stream = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = 0;
    loop {
        match tokio::time::timeout(STEP, stream.try_next()).await?? {
            Some(watcher::Event::InitApply(_)) => initial += 1,
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => bail!("watch ended early"),
        }
    }
    assert_eq!(initial, 5);

    let generated: Pod = serde_json::from_value(json!({"metadata": {"generateName": "web-"},
        "spec": {"containers": [{"name": "a", "image": "b"}]}}))?;
    let created = pods.create(&PostParams::default(), &generated).await?;
    let name = created.metadata.name.clone().context("generated name")?;
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 5, "{name}");
    match tokio::time::timeout(STEP, stream.try_next()).await?? {
        Some(watcher::Event::Apply(p)) => assert_eq!(p.metadata.name.as_deref(), Some(name.as_str())),
        other => bail!("expected the created pod, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn dropping_the_server_closes_it() -> Result<()> {
    let server = TestApiServer::start()?;
    let addr = server.addr();
    let pods: Api<Pod> = Api::all(client_for(&server).await?);
    let mut stream = watcher(pods, watcher::Config::default()).boxed();
    while !matches!(tokio::time::timeout(STEP, stream.try_next()).await??, Some(watcher::Event::InitDone)) {}
    drop(server);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "{addr} still accepts connections");
    // The open watch ends (an error or the end of the stream), it does not hang.
    let next = tokio::time::timeout(STEP, stream.next()).await?;
    assert!(!matches!(next, Some(Ok(watcher::Event::Apply(_)))), "{next:?}");
    Ok(())
}

#[tokio::test]
async fn thousands_of_pods_list_in_pages_and_watch() -> Result<()> {
    let server = TestApiServer::start()?;
    let started = std::time::Instant::now();
    for i in 0..2000 {
        server.put(pod(&format!("ns{}", i % 10), &format!("pod-{i:04}"), if i % 2 == 0 { "even" } else { "odd" }))?;
    }
    let seeded = started.elapsed();
    let pods: Api<Pod> = Api::all(client_for(&server).await?);
    let started = std::time::Instant::now();
    let everything = pods.list(&ListParams::default()).await?;
    let listed = started.elapsed();
    assert_eq!(everything.items.len(), 2000);
    // kube-rs's watcher lists in pages of 500 and follows `continue`.
    let started = std::time::Instant::now();
    let mut stream = watcher(pods, watcher::Config::default().labels("app=even")).boxed();
    let mut names = std::collections::BTreeSet::new();
    loop {
        match tokio::time::timeout(STEP, stream.try_next()).await?? {
            Some(watcher::Event::InitApply(p)) => {
                names.insert(p.metadata.name.unwrap_or_default());
            }
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => bail!("watch ended early"),
        }
    }
    assert_eq!(names.len(), 1000);
    println!("seed 2000 pods: {seeded:?}; list all: {listed:?}; paged watcher init: {:?}", started.elapsed());
    Ok(())
}
