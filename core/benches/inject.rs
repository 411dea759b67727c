//! Injection latency: the hello pod (goal < 20 µs) and a pod with 2000 env vars in one container
//! (goal < 5 ms; Istio took 12 s before its patch fix and about 10 ms after).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, inject};
use serde_json::{Value, json};

fn hello() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "hello-7d4f9-", "namespace": "default",
            "labels": {"app": "hello", "pod-template-hash": "7d4f9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-7d4f9", "controller": true}]},
        "spec": {"containers": [{"name": "hello", "image": "fake.docker.io/google-samples/hello-go-gke:1.0",
            "ports": [{"name": "http", "containerPort": 80}]}]}})
}

fn many_env() -> Value {
    let mut pod = hello();
    let env: Vec<Value> =
        (0..2000).map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")})).collect();
    pod["spec"]["containers"][0]["env"] = Value::Array(env);
    pod
}

fn bench(c: &mut Criterion) {
    let cfg = InjectConfig::default();
    let req =
        InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true };
    for (name, pod) in [("inject/hello", hello()), ("inject/2000-env-vars", many_env())] {
        assert!(matches!(inject(&pod, &req, &cfg), Decision::Patch(_)));
        c.bench_function(name, |b| b.iter(|| inject(black_box(&pod), black_box(&req), black_box(&cfg))));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
