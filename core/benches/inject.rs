//! Injection latency: the hello pod (goal < 20 µs) and a pod with 2000 env vars in one container
//! (goal < 5 ms; Istio took 12 s before its patch fix and about 10 ms after).
//!
//! The re-review (`reinvocationPolicy: IfNeeded`) of the injected hello pod, as the API server sends
//! it after decoding the patched pod into its Go types and defaulting it: the first such review of
//! a pod template is a review-cache miss, answered with an empty patch after the injection is
//! built, applied and compared with the pod (`drift::same_pod`).
//!
//! Two measurements of the same work: wall time (criterion's default), and the benchmark thread's
//! CPU time (from `/proc/thread-self/schedstat`), which stays meaningful on a shared, loaded machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector, inject};
use serde_json::{Value, json};

/// The allocator mesh-webhook runs injection with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// CPU time of the benchmark thread, in nanoseconds (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Criterion measurement of the thread's CPU time.
struct CpuTime;

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e-3, "µs cpu"),
            t if t < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, _throughput: &Throughput, _values: &mut [f64]) -> &'static str {
        "n/a"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

fn cases() -> [(&'static str, Value); 4] {
    [
        ("hello", hello()),
        ("2000-env-vars", many_env()),
        ("hello-injected-re-review", injected(&hello())),
        ("hello-re-review", re_review(&hello())),
    ]
}

/// `pod` with the default config's patch applied, as the patch left it (no API server in between).
fn injected(pod: &Value) -> Value {
    let Decision::Patch(patch) = Injector::new(InjectConfig::default()).inject(pod, &request()) else {
        panic!("the hello pod is injected")
    };
    let mut pod = pod.clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    pod
}

/// What the API server writes back after decoding a pod and defaulting it, for the fields the
/// injection of the hello pod holds (the full model is the test API server's `defaulting`):
/// container termination message and pull policy, port protocol, `fieldRef.apiVersion`,
/// `resourceFieldRef.divisor`, probe thresholds, `httpGet.scheme`, volume `defaultMode`, token
/// expiry, and every object's members in another order.
fn read_back(parent: &str, v: &mut Value) {
    match v {
        Value::Object(map) => {
            let defaults: &[(&str, Value)] = match parent {
                "containers" | "initContainers" => &[
                    ("terminationMessagePath", json!("/dev/termination-log")),
                    ("terminationMessagePolicy", json!("File")),
                    ("imagePullPolicy", json!("IfNotPresent")),
                ],
                "ports" => &[("protocol", json!("TCP"))],
                "fieldRef" => &[("apiVersion", json!("v1"))],
                "resourceFieldRef" => &[("divisor", json!("0"))],
                "httpGet" => &[("scheme", json!("HTTP"))],
                "configMap" | "secret" | "downwardAPI" | "projected" => &[("defaultMode", json!(420))],
                "serviceAccountToken" => &[("expirationSeconds", json!(3600))],
                p if p.ends_with("Probe") => &[
                    ("timeoutSeconds", json!(1)),
                    ("periodSeconds", json!(10)),
                    ("successThreshold", json!(1)),
                    ("failureThreshold", json!(3)),
                ],
                _ => &[],
            };
            for (key, value) in defaults {
                map.entry(*key).or_insert_with(|| value.clone());
            }
            for (key, value) in map.iter_mut() {
                read_back(key, value);
            }
            let members: Vec<(String, Value)> = std::mem::take(map).into_iter().rev().collect();
            map.extend(members);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| read_back(parent, i)),
        _ => {}
    }
}

/// `pod` injected with the default config and read back by the API server: its re-review.
fn re_review(pod: &Value) -> Value {
    let mut pod = pod.clone();
    read_back("", &mut pod);
    let mut pod = injected(&pod);
    read_back("", &mut pod);
    pod
}

fn request() -> InjectRequest<'static> {
    InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

fn wall(c: &mut Criterion) {
    // As mesh-webhook injects: with an Injector made once per config.
    let injector = Injector::new(InjectConfig::default());
    for (name, pod) in cases() {
        let Decision::Patch(patch) = injector.inject(&pod, &request()) else { panic!("{name}: not injected") };
        assert_eq!(patch.0.is_empty(), name.ends_with("re-review"), "{name}");
        c.bench_function(&format!("inject/{name}"), |b| {
            b.iter(|| injector.inject(black_box(&pod), black_box(&request())))
        });
    }
    // The plain function, which renders the whole template every time (`kubectl mesh inject`'s
    // first pod, tests).
    let cfg = InjectConfig::default();
    let pod = hello();
    c.bench_function("inject-fn/hello", |b| b.iter(|| inject(black_box(&pod), black_box(&request()), black_box(&cfg))));
}

fn cpu(c: &mut Criterion<CpuTime>) {
    let injector = Injector::new(InjectConfig::default());
    for (name, pod) in cases() {
        c.bench_function(&format!("inject-cpu/{name}"), |b| {
            // The kernel's per-thread CPU clock advances in scheduler ticks: repeat the batch until
            // it has used 50 ms of CPU and report the cost of one batch.
            b.iter_custom(|iters| {
                let start = thread_cpu_ns();
                let mut batches = 0u32;
                while batches == 0 || thread_cpu_ns().saturating_sub(start) < 50_000_000 {
                    for _ in 0..iters {
                        black_box(injector.inject(black_box(&pod), black_box(&request())));
                    }
                    batches += 1;
                }
                Duration::from_nanos(thread_cpu_ns().saturating_sub(start)) / batches
            })
        });
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime).sample_size(20);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
