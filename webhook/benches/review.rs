//! One admission review through the webhook's pure path, without sockets: parse the API server's
//! AdmissionReview (`shared/fixtures/kube-apiserver/`: a bare pod and a ReplicaSet's pod), inject with the
//! config's `Injector`, write the response with the base64 patch; and the same review answered from
//! the review cache, as replicas of a workload are. This is the per-review work that the load
//! benchmark (`webhook-load`) measures together with TLS, HTTP and logging.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector};
use mesh_webhook::admission::{Verdict, parse_review, render_response};
use mesh_webhook::cache::{Decided, Key, ReviewCache};
use mesh_webhook::metrics::Outcome;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture(name: &str) -> Vec<u8> {
    mesh_test_data::read_shared(&format!("fixtures/kube-apiserver/{name}")).unwrap_or_else(|e| panic!("{e}"))
}

/// What the webhook passes to the injector for a review on `/inject` with nodes that support
/// native sidecars.
fn inject_request(namespace: &str) -> InjectRequest<'_> {
    InjectRequest { namespace, cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

fn review(body: &[u8], injector: &Injector) -> Vec<u8> {
    let request = parse_review(body).expect("a valid review");
    let object = request.object_value().expect("an object");
    let req = inject_request(&request.namespace);
    let verdict = match injector.inject(&object, &req) {
        Decision::Patch(patch) => Verdict::patch(&patch).expect("an encoded patch"),
        other => panic!("not injected: {other:?}"),
    };
    render_response(&request.api_version, &request.uid, &verdict).expect("a response")
}

/// A review answered from the cache: parse, key, look up, respond.
fn cached_review(body: &[u8], cache: &ReviewCache) -> Vec<u8> {
    let request = parse_review(body).expect("a valid review");
    let key = Key::new(&request, None, None, true);
    let decided = cache.get(&key).expect("a cached answer");
    render_response(&request.api_version, &request.uid, &decided.verdict).expect("a response")
}

fn bench(c: &mut Criterion) {
    for (name, file) in [
        ("pod-foo", "admissionreview-v1-pod-foo.json"),
        ("replicaset-pod", "admissionreview-v1-pod-generatename-owner.json"),
    ] {
        bench_review(c, name, &fixture(file));
    }
}

fn bench_review(c: &mut Criterion, name: &str, body: &[u8]) {
    let injector = Injector::new(InjectConfig::default());
    c.bench_function(&format!("review/{name}"), |b| b.iter(|| review(black_box(body), &injector)));
    c.bench_function(&format!("review/{name}/parse"), |b| {
        b.iter(|| parse_review(black_box(body)).and_then(|request| request.object_value()))
    });
    let request = parse_review(body).expect("a valid review");
    let object = request.object_value().expect("an object");
    let req = inject_request(&request.namespace);
    c.bench_function(&format!("review/{name}/inject"), |b| b.iter(|| injector.inject(black_box(&object), &req)));
    let Decision::Patch(patch) = injector.inject(&object, &req) else { panic!("not injected") };
    c.bench_function(&format!("review/{name}/encode"), |b| b.iter(|| Verdict::patch(black_box(&patch))));
    let verdict = Verdict::patch(&patch).expect("an encoded patch");
    c.bench_function(&format!("review/{name}/respond"), |b| {
        b.iter(|| render_response(&request.api_version, &request.uid, black_box(&verdict)))
    });
    let cache = ReviewCache::new(mesh_webhook::cache::DEFAULT_BYTES);
    let decided = Decided { outcome: Outcome::Injected, reason: "", reason_text: String::new(), verdict };
    cache.insert(Key::new(&request, None, None, true), std::sync::Arc::new(decided));
    c.bench_function(&format!("review/{name}/cached"), |b| b.iter(|| cached_review(black_box(body), &cache)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
