//! Golden conformance of mesh-init's rendering against Istio's istio-iptables and istio-nftables
//! test data (shared/conformance/istio-iptables). The iptables side runs the real apply path with
//! a recording runner, so the transcript (saves, restore inputs, saves) is what Istio's stub records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use mesh_core::capture::CaptureConfig;
use mesh_init::backend::{self, ApplyOptions, Flavor};
use mesh_init::command::Recorder;
use mesh_init::rules::{self, Facts};
use serde_json::Value;

struct Case {
    name: String,
    cfg: CaptureConfig,
    facts: Facts,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().map(scalar).collect(),
        Some(other) => vec![scalar(other)],
        None => vec![],
    }
}

fn load_cases(path: &Path) -> Result<Vec<Case>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_saphyr::from_str(&text).context("parsing cases.yaml")?;
    let base = doc["base_config"].as_object().context("base_config")?.clone();
    let mut out = Vec::new();
    for case in doc["cases"].as_array().context("cases")? {
        let name = case["name"].as_str().context("case name")?.to_owned();
        let mut merged: BTreeMap<String, Value> = base.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(cfg) = case["config"].as_object() {
            merged.extend(cfg.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut args = Vec::new();
        let mut env = BTreeMap::new();
        for (key, value) in &merged {
            if key == "note" || key.starts_with("test.") {
                continue;
            }
            if let Some(var) = key.strip_prefix("env.") {
                env.insert(var.to_owned(), scalar(value));
            } else {
                args.push(format!("--{key}={}", scalar(value)));
            }
        }
        let cfg = CaptureConfig::from_args_and_env(&args, |k| env.get(k).cloned())
            .with_context(|| format!("case {name}: parsing {args:?}"))?;
        let facts = Facts {
            ipv6: merged.get("test.enable-ipv6").and_then(Value::as_bool).unwrap_or(false),
            dns_servers_v4: strings(merged.get("test.dns-servers-v4")),
            dns_servers_v6: strings(merged.get("test.dns-servers-v6")),
        };
        out.push(Case { name, cfg, facts });
    }
    Ok(out)
}

fn iptables_transcript(case: &Case) -> Result<String> {
    let set = rules::build(&case.cfg, &case.facts)?;
    let rec = Recorder::new();
    backend::apply_iptables(&rec, Flavor::Default, &set, ApplyOptions::default())?;
    Ok(rec.transcript())
}

fn diff(want: &str, got: &str) -> String {
    mesh_test_data::first_differences(want, got, 3).join("\n")
}

#[test]
fn istio_iptables_and_nftables_goldens() -> Result<()> {
    let dir = mesh_tests::shared_dir()?.join("conformance/istio-iptables");
    let cases = load_cases(&dir.join("cases.yaml"))?;
    let total = cases.len();
    let (mut ipt_ok, mut nft_ok) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let ipt_golden = std::fs::read_to_string(dir.join("iptables").join(format!("{}.golden", case.name)))
            .with_context(|| format!("iptables golden of {}", case.name))?;
        let got = iptables_transcript(case)?;
        if got.trim() == ipt_golden.trim() {
            ipt_ok += 1;
        } else {
            failures.push(format!("iptables {}: {}", case.name, diff(ipt_golden.trim(), got.trim())));
        }
        let nft_golden = std::fs::read_to_string(dir.join("nftables").join(format!("{}.golden", case.name)))
            .with_context(|| format!("nftables golden of {}", case.name))?;
        let got = rules::nft::transaction(&rules::build(&case.cfg, &case.facts)?);
        if got.trim() == nft_golden.trim() {
            nft_ok += 1;
        } else {
            failures.push(format!("nft {}: {}", case.name, diff(nft_golden.trim(), got.trim())));
        }
    }
    println!("iptables conformance: {ipt_ok}/{total}, nft conformance: {nft_ok}/{total}");
    if total == 0 {
        bail!("no cases in cases.yaml");
    }
    if !failures.is_empty() {
        bail!("{} golden mismatches:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// mesh-init's own golden cases (tests/tests/init_golden): combinations the shared cases do not
/// cover. `UPDATE_GOLDEN=1` rewrites the files.
#[test]
fn project_goldens() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/init_golden");
    let cases = load_cases(&dir.join("cases.yaml"))?;
    ensure!(!cases.is_empty(), "no cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let set = rules::build(&case.cfg, &case.facts)?;
        for (kind, got) in [("iptables", iptables_transcript(case)?), ("nft", rules::nft::transaction(&set))] {
            let path = dir.join(format!("{}.{kind}.golden", case.name));
            if let Err(e) = mesh_tests::check_golden(&path, &format!("{}\n", got.trim())) {
                failures.push(format!("{kind} {}: {e}", case.name));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{} golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// Every project golden case applies cleanly in a fresh network namespace, through
/// `iptables-restore`/`ip6tables-restore` and through `nft -f`: the rules are not only the
/// expected text but a ruleset the kernel accepts.
#[test]
fn project_goldens_apply_in_a_fresh_netns() -> Result<()> {
    mesh_tests::netns::require_root_and_tools()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/init_golden");
    let cases = load_cases(&dir.join("cases.yaml"))?;
    ensure!(!cases.is_empty(), "no cases in {}", dir.display());
    let scratch = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let set = rules::build(&case.cfg, &case.facts)?;
        let mut inputs = Vec::new();
        for family in set.families() {
            let program = if family == rules::Family::V4 { "iptables-restore" } else { "ip6tables-restore" };
            inputs.push(("ipt", program, rules::iptables::restore_input(&set, family)));
        }
        inputs.push(("nft", "nft", rules::nft::transaction(&set)));
        for (j, (backend, program, input)) in inputs.into_iter().enumerate() {
            // A fresh namespace per backend: the two must not see each other's rules.
            let ns = mesh_tests::netns::Netns::create(&format!("mig{i}{backend}-{}", std::process::id()))?;
            let file = scratch.path().join(format!("{i}-{j}.rules"));
            std::fs::write(&file, &input)?;
            let path = file.to_str().context("scratch path")?;
            let args: Vec<&str> = if program == "nft" { vec!["-f", path] } else { vec!["--noflush", path] };
            if let Err(e) = ns.exec_ok(program, &args) {
                failures.push(format!("{} ({program}): {e:#}", case.name));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{} golden cases do not apply:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}
