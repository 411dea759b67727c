//! kubectl-mesh seen through the REAL kubectl ($MESH_KUBECTL) and the test API server: plugin
//! discovery (`kubectl plugin list`, `kubectl mesh`), kubectl's plugin completion hook
//! (`kubectl __complete mesh ...` runs `kubectl_complete-mesh`, which asks the cluster for pods and
//! namespaces with the command line's cluster flags), the bash script of `kubectl mesh completion`,
//! and `kubectl mesh inject -o json` on a stream with nested Lists applied with `kubectl apply`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use mesh_tests::Tool;
use mesh_tests::apiserver::TestApiServer;
use mesh_tests::support::workspace_binary;
use serde_json::{Value, json};

/// A HOME with the plugin's two binaries alone on PATH, and the server's kubeconfig.
struct Env {
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(server: &TestApiServer) -> Result<Env> {
        let kubectl = Tool::Kubectl.path()?;
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("bin"))?;
        for name in ["kubectl-mesh", "kubectl_complete-mesh"] {
            let built = workspace_binary(name)?;
            std::os::unix::fs::symlink(&built, dir.path().join("bin").join(name))
                .with_context(|| format!("linking {}", built.display()))?;
        }
        server.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        Ok(Env { kubectl, dir })
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// kubectl with PATH = the plugin's directory only and `KUBECONFIG` = the server's (or none).
    fn command(&self, with_kubeconfig: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.args(args).env("PATH", self.bin()).env("HOME", self.dir.path()).current_dir(self.dir.path());
        if with_kubeconfig {
            cmd.env("KUBECONFIG", self.kubeconfig());
        } else {
            cmd.env_remove("KUBECONFIG");
        }
        cmd
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.command(true, args).output().with_context(|| format!("running kubectl {args:?}"))?;
        ok(args, out)
    }

    /// `kubectl __complete mesh WORDS...`: the candidates (without descriptions) and the directive.
    fn complete(&self, with_kubeconfig: bool, words: &[&str]) -> Result<(Vec<String>, String)> {
        let mut args = vec!["__complete", "mesh"];
        args.extend_from_slice(words);
        let out = self.command(with_kubeconfig, &args).output()?;
        parse_completion(&ok(&args, out)?)
    }
}

fn ok(args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!("kubectl {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// cobra's `__complete` output: candidate lines (`value<TAB>description`), then `:<directive>`.
fn parse_completion(text: &str) -> Result<(Vec<String>, String)> {
    let mut lines: Vec<&str> = text.lines().collect();
    let directive = lines.pop().context("empty completion output")?;
    let Some(directive) = directive.strip_prefix(':') else { bail!("no directive line in {text:?}") };
    let values = lines.iter().map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect();
    Ok((values, directive.to_owned()))
}

fn seed(server: &TestApiServer) -> Result<()> {
    for (ns, name) in [("default", "foo"), ("default", "foo-v2"), ("default", "bar"), ("other", "baz")] {
        server.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": "app"}, {"name": "istio-proxy", "image": "proxyv2"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7"}}))?;
    }
    Ok(())
}

#[test]
fn kubectl_finds_and_runs_the_plugin() -> Result<()> {
    let server = TestApiServer::start()?;
    let env = Env::new(&server)?;
    let list = env.ok(&["plugin", "list"])?;
    let plugin = env.bin().join("kubectl-mesh").display().to_string();
    assert!(list.lines().any(|l| l.trim() == plugin), "kubectl plugin list:\n{list}");
    // The hook is not a plugin (no `kubectl-` prefix), so kubectl does not list it.
    assert!(!list.contains("kubectl_complete-mesh"), "{list}");
    let version = env.ok(&["mesh", "version"])?;
    assert_eq!(version.trim(), format!("kubectl-mesh {}", env!("CARGO_PKG_VERSION")));
    Ok(())
}

#[test]
fn kubectl_completes_subcommands_flags_and_values_through_the_hook() -> Result<()> {
    let server = TestApiServer::start()?;
    let env = Env::new(&server)?;
    assert_eq!(env.complete(true, &["ex"])?, (vec!["explain".to_owned()], "4".to_owned()));
    let (subcommands, _) = env.complete(true, &[""])?;
    for sub in ["proxy-status", "explain", "inject", "check-inject", "completion"] {
        assert!(subcommands.iter().any(|s| s == sub), "{sub} missing from {subcommands:?}");
    }
    assert_eq!(env.complete(true, &["explain", "pod/foo", "-o", ""])?.0, ["text", "json", "yaml"]);
    assert_eq!(
        env.complete(true, &["proxy-status", "--admin-via="])?.0,
        ["--admin-via=port-forward", "--admin-via=proxy"]
    );
    assert_eq!(env.complete(true, &["explain", "--admin-p"])?.0, ["--admin-port"]);
    // A file flag lets the shell complete file names (directive 0).
    assert_eq!(env.complete(true, &["inject", "-f", ""])?, (vec![], "0".to_owned()));
    Ok(())
}

#[test]
fn kubectl_completes_pods_and_namespaces_from_the_cluster() -> Result<()> {
    let server = TestApiServer::start()?;
    seed(&server)?;
    let env = Env::new(&server)?;
    let pods = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // The kubeconfig's namespace (default), then -n.
    assert_eq!(env.complete(true, &["explain", "pod/"])?, (pods(&["pod/bar", "pod/foo", "pod/foo-v2"]), "4".into()));
    assert_eq!(env.complete(true, &["explain", "pod/fo"])?.0, ["pod/foo", "pod/foo-v2"]);
    assert_eq!(env.complete(true, &["explain", "-n", "other", "pod/"])?.0, ["pod/baz"]);
    assert_eq!(env.complete(true, &["proxy-status", "f"])?.0, ["foo", "foo-v2"]);
    assert_eq!(env.complete(true, &["proxy-status", "-A", "b"])?.0, ["bar.default", "baz.other"]);
    // The cluster flags on the command line choose the cluster: --kubeconfig with no $KUBECONFIG.
    let kubeconfig = env.kubeconfig().display().to_string();
    assert_eq!(env.complete(false, &["explain", "--kubeconfig", &kubeconfig, "pod/f"])?.0, ["pod/foo", "pod/foo-v2"]);
    // Without a cluster there is nothing to offer, and no files either.
    assert_eq!(env.complete(false, &["explain", "--kubeconfig", "/nonexistent", "pod/"])?, (vec![], "4".to_owned()));

    let (namespaces, directive) = env.complete(true, &["proxy-status", "-n", ""])?;
    assert_eq!(directive, "4");
    assert_eq!(namespaces, ["default", "kube-node-lease", "kube-public", "kube-system", "other"]);
    assert_eq!(env.complete(true, &["explain", "--namespace=o"])?.0, ["--namespace=other"]);
    let (contexts, _) = env.complete(true, &["explain", "--context", ""])?;
    assert_eq!(contexts, ["mesh-test"]);
    // The lookups are plain lists of pods and namespaces.
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.starts_with("GET /api/v1/namespaces/other/pods")), "{requests:?}");
    assert!(
        requests.iter().any(|r| r.starts_with("GET /api/v1/namespaces?") || r == "GET /api/v1/namespaces"),
        "{requests:?}"
    );
    Ok(())
}

/// `kubectl mesh completion bash`, sourced into bash, completes `kubectl-mesh explain -o `: the
/// script clap_complete writes for a hyphenated name completed no subcommand's flags.
#[test]
fn bash_script_completes_subcommand_flags() -> Result<()> {
    let plugin = workspace_binary("kubectl-mesh")?;
    let script = Command::new(&plugin).args(["completion", "bash"]).output()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubectl-mesh.bash");
    std::fs::write(&path, ok(&["completion", "bash"], script)?)?;
    let complete = |words: &str, cword: usize| -> Result<String> {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _kubectl_mesh kubectl-mesh \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[*]}}\"",
            path.display()
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &program])
            .stdin(Stdio::null())
            .output()
            .context("running bash (install bash)")?;
        Ok(ok(&["bash"], out)?.trim().to_owned())
    };
    assert_eq!(complete("kubectl-mesh ex", 1)?, "explain");
    assert_eq!(complete("kubectl-mesh explain -o ''", 3)?, "text json yaml");
    assert_eq!(complete("kubectl-mesh proxy-status --admin-v", 2)?, "--admin-via");
    Ok(())
}

/// `inject -o json` on a stream whose List holds a List prints one flat List, which `kubectl apply`
/// creates object by object (the test API server serves no OpenAPI, hence `--validate=false`).
#[test]
fn injected_list_is_applied_by_kubectl() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))?;
    let env = Env::new(&server)?;
    let input = "\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec: {containers: [{name: web, image: web:1}]}
- apiVersion: v1
  kind: List
  items:
  - apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec: {selector: {app: web}, ports: [{port: 80}]}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: web, namespace: shop}
    data: {a: b}
---
apiVersion: v1
kind: Pod
metadata: {name: one, namespace: shop}
spec: {automountServiceAccountToken: false, containers: [{name: one, image: one:1}]}
";
    let injected = pipe(&workspace_binary("kubectl-mesh")?, &["inject", "-f", "-", "-o", "json"], input, None)?;
    let list: Value = serde_json::from_str(&injected)?;
    assert_eq!(list["kind"], "List");
    let kinds: Vec<&str> =
        list["items"].as_array().context("items")?.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(kinds, ["Deployment", "Service", "ConfigMap", "Pod"]);

    let applied = pipe(&env.kubectl, &["apply", "--validate=false", "-f", "-"], &injected, Some(&env))?;
    for line in ["deployment.apps/web created", "service/web created", "configmap/web created", "pod/one created"] {
        assert!(applied.lines().any(|l| l == line), "{line:?} missing from kubectl apply's output:\n{applied}");
    }
    let deployment = server.get("apps/v1", "Deployment", "shop", "web").context("Deployment shop/web not created")?;
    let containers = &deployment["spec"]["template"]["spec"];
    let proxy = containers["initContainers"]
        .as_array()
        .into_iter()
        .chain(containers["containers"].as_array())
        .flatten()
        .any(|c| c["name"] == "istio-proxy");
    assert!(proxy, "the applied Deployment has no istio-proxy: {containers}");
    for (api_version, kind, name) in [("v1", "Service", "web"), ("v1", "ConfigMap", "web"), ("v1", "Pod", "one")] {
        assert!(server.get(api_version, kind, "shop", name).is_some(), "{kind} shop/{name} not created");
    }
    // Applying again changes nothing: kubectl finds each object and its last-applied annotation.
    // The Pod is the exception in what kubectl prints, as with a real API server: the server
    // decoded it with its defaults (`emptyDir: {}` for the volumes Istio's template writes without a
    // source, `fieldRef.apiVersion: v1` in the downward API items), and kubectl's three-way patch
    // re-sends what differs from the manifest (a `$retainKeys` for those volumes, the items list,
    // which has no merge key), so it prints `configured`. What that patch leaves is not checked:
    // the test API server applies a strategic merge patch as a JSON merge patch
    // (docs/test-apiserver.md). (The Pod opts out of the ServiceAccount plugin's token volume, which
    // the manifest does not hold either.)
    let again = pipe(&env.kubectl, &["apply", "--validate=false", "-f", "-"], &injected, Some(&env))?;
    for line in
        ["deployment.apps/web unchanged", "service/web unchanged", "configmap/web unchanged", "pod/one configured"]
    {
        assert!(again.lines().any(|l| l == line), "{line:?} missing from the second apply's output:\n{again}");
    }
    Ok(())
}

/// Runs `program args` with `input` on stdin (kubectl in `env`); its stdout.
fn pipe(program: &Path, args: &[&str], input: &str, env: Option<&Env>) -> Result<String> {
    use std::io::Write as _;
    let mut cmd = match env {
        Some(env) => env.command(true, args),
        None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} {args:?}", program.display()))?;
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    ok(args, child.wait_with_output()?)
}

/// Every `-o json|yaml` document of the binary starts with its version fields (`inject` prints
/// Kubernetes objects, which carry their own).
#[test]
fn documents_name_their_version() -> Result<()> {
    let plugin = workspace_binary("kubectl-mesh")?;
    let dump = mesh_tests::repo_root().join("examples/explain/foo-config-dump.json").display().to_string();
    for format in ["json", "yaml"] {
        let out = Command::new(&plugin).args(["explain", "--file", &dump, "-o", format]).output()?;
        // Exit 2 is a finding (the dump's referenced objects are unchecked offline), not a failure.
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "explain -o {format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_saphyr::from_slice(&out.stdout).with_context(|| format!("explain -o {format}"))?;
        assert_eq!(doc["apiVersion"], "mesh.dev/v1alpha1", "explain -o {format}");
        assert_eq!(doc["kind"], "Explanation", "explain -o {format}");
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.trim_start_matches(['{', '\n', ' ']).lines().next().unwrap_or_default().to_owned();
        assert!(first.contains("apiVersion"), "explain -o {format} starts with {first:?}");
    }
    let example = mesh_tests::repo_root().join("examples/inject/deployment.yaml").display().to_string();
    let out = Command::new(&plugin).args(["inject", "-f", &example, "-o", "json"]).output()?;
    let doc: Value = serde_json::from_str(&ok(&["inject"], out)?)?;
    assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{doc}");
    Ok(())
}
