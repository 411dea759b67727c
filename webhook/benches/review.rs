//! One admission review through the webhook's pure path, without sockets: parse the API server's
//! AdmissionReview (`shared/fixtures/kube-apiserver/admissionreview-v1-pod-foo.json`), inject with the
//! config's `Injector`, write the response with the base64 patch. This is the per-review work that
//! the load benchmark (`webhook-load`) measures together with TLS, HTTP and logging.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector};
use mesh_webhook::admission::{Verdict, parse_review, render_response};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture() -> Vec<u8> {
    let shared = std::env::var_os("MESH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = shared.join("fixtures/kube-apiserver/admissionreview-v1-pod-foo.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (set MESH_SHARED to the shared directory)", path.display()))
}

fn review(body: &[u8], injector: &Injector) -> Vec<u8> {
    let request = parse_review(body).expect("a valid review");
    let req = InjectRequest {
        namespace: &request.namespace,
        cluster_id: None,
        network: None,
        nodes_support_native_sidecars: true,
    };
    let verdict = match injector.inject(&request.object, &req) {
        Decision::Patch(patch) => Verdict::Patch(patch),
        other => panic!("not injected: {other:?}"),
    };
    render_response(&request.api_version, &request.uid, &verdict).expect("a response")
}

fn bench(c: &mut Criterion) {
    let body = fixture();
    let injector = Injector::new(InjectConfig::default());
    c.bench_function("review/pod-foo", |b| b.iter(|| review(black_box(&body), &injector)));
    c.bench_function("review/parse", |b| b.iter(|| parse_review(black_box(&body))));
    let request = parse_review(&body).expect("a valid review");
    let req = InjectRequest {
        namespace: &request.namespace,
        cluster_id: None,
        network: None,
        nodes_support_native_sidecars: true,
    };
    c.bench_function("review/inject", |b| b.iter(|| injector.inject(black_box(&request.object), &req)));
    let Decision::Patch(patch) = injector.inject(&request.object, &req) else { panic!("not injected") };
    let verdict = Verdict::Patch(patch);
    c.bench_function("review/respond", |b| {
        b.iter(|| render_response(&request.api_version, &request.uid, black_box(&verdict)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
