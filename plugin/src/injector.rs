//! `kubectl mesh injector list`: which injector serves each namespace, and which pods run a sidecar
//! that differs from what that injector injects today (or none at all) and need their owner
//! restarted.
//!
//! Fetches the MutatingWebhookConfigurations, the config each mesh webhook serves (its Service →
//! Deployment → `--config` volume → ConfigMap), the namespaces and the pods, then builds a
//! [`model::Listing`]: "outdated" is exact, each injected pod is injected again with today's config
//! and compared ([`mesh_core::drift`]), once per owner and template. Exit codes: 0 every selected pod
//! is injected and current; 2 a pod is outdated or not injected; 1 the command failed.

pub mod model;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use mesh_core::inject::InjectConfig;
use serde_json::Value;

pub use crate::check_inject::webhooks::{ClusterWebhooks, fetch_webhooks, read_config};
use crate::check_inject::{Output, table, webhook_config};
use crate::cluster::objects::{NAMESPACES, PODS};
use crate::cluster::{Cluster, ClusterArgs};
use model::{Listing, PodState, Webhook};

/// `kubectl mesh injector`.
#[derive(Debug, Clone, Args)]
pub struct InjectorArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: InjectorCommand,
}

/// The `injector` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum InjectorCommand {
    /// One row per namespace an injector selects (or with injected pods): its webhook and revision, and
    /// how many pods are injected and current, injected and outdated, or not injected.
    List(Box<ListArgs>),
}

/// `kubectl mesh injector list`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit codes: 0 every selected pod is injected and current; 2 a pod is outdated or not \
injected; 1 the command failed.\n\nExamples:\n  kubectl mesh injector list -A\n  \
kubectl mesh injector list -n shop --show-pods\n  kubectl mesh injector list -A -o json")]
pub struct ListArgs {
    /// All namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// List each outdated or not injected pod, its first differences and the command that restarts its owner.
    #[arg(long)]
    pub show_pods: bool,
    /// The injector config to compare with, for every injector (default: the one each mesh webhook serves).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// kubectl's cluster flags.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `kubectl mesh injector ...`.
pub async fn run(args: InjectorArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    match args.command {
        InjectorCommand::List(list) => run_list(*list, out).await,
    }
}

async fn run_list(args: ListArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let fixed = read_config(args.config.as_ref())?;
    let cluster = Cluster::connect(&args.cluster).await?;
    let only = (!args.all_namespaces).then(|| cluster.namespace.clone());
    let (webhooks, namespaces, pods) = futures::try_join!(
        fetch_webhooks(&cluster, fixed.is_none()),
        async {
            match &only {
                Some(ns) => Ok(cluster.get_object(NAMESPACES, None, ns).await?.into_iter().collect()),
                None => cluster.list_objects(NAMESPACES, None, None).await,
            }
        },
        cluster.list_objects(PODS, only.as_deref(), None),
    )?;
    let listing = list(&webhooks, &namespaces, &pods, only.as_deref(), fixed.as_ref())?;
    out.write_all(render(&listing, args.output, args.show_pods)?.as_bytes())?;
    Ok(listing.exit_code())
}

/// The pure part: the listing of `pods` in `namespaces` under the cluster's webhooks.
pub fn list(
    cluster: &ClusterWebhooks,
    namespaces: &[Value],
    pods: &[Value],
    only: Option<&str>,
    fixed: Option<&InjectConfig>,
) -> anyhow::Result<Listing> {
    let webhooks = Webhook::all(&cluster.mwcs)?;
    let config_for = |mwc: &Value, w: &Value, mesh: bool| -> anyhow::Result<Option<InjectConfig>> {
        if let Some(c) = fixed {
            return Ok(Some(c.clone()));
        }
        if !mesh {
            return Ok(None);
        }
        webhook_config(&cluster.objects, mwc, w, "in the cluster").map(Some)
    };
    model::build(&webhooks, namespaces, pods, only, &config_for)
}

/// Renders the listing: the namespace table (and with `show_pods` the pods and restart commands), or
/// a JSON/YAML document.
pub fn render(listing: &Listing, output: Output, show_pods: bool) -> anyhow::Result<String> {
    let doc = || -> anyhow::Result<Value> {
        let mut v = serde_json::to_value(listing)?;
        if !show_pods && let Some(o) = v.as_object_mut() {
            o.remove("pods");
        }
        Ok(v)
    };
    match output {
        Output::Json => return Ok(serde_json::to_string_pretty(&doc()?)? + "\n"),
        Output::Yaml => return Ok(serde_saphyr::to_string(&doc()?)?),
        Output::Table => {}
    }
    let header =
        ["NAMESPACE", "LABELS", "WEBHOOK", "REVISION", "INJECTED CURRENT", "INJECTED OUTDATED", "NOT INJECTED"];
    let rows: Vec<[String; 7]> = listing
        .namespaces
        .iter()
        .map(|r| {
            let webhook = if r.conflicts.is_empty() {
                r.webhook.clone()
            } else {
                format!("{} (CONFLICT: also {})", r.webhook, r.conflicts.join(", "))
            };
            [
                r.namespace.clone(),
                r.labels.clone(),
                webhook,
                r.revision.clone(),
                r.injected_current.to_string(),
                r.injected_outdated.to_string(),
                r.not_injected.to_string(),
            ]
        })
        .collect();
    let mut out =
        if rows.is_empty() { "No namespace is selected by an injector.\n".to_string() } else { table(&header, &rows) };
    for r in listing.namespaces.iter().filter(|r| r.unchecked > 0) {
        out.push_str(&format!(
            "{}: {} injected pods not compared: the config of {} is unknown (give --config FILE)\n",
            r.namespace, r.unchecked, r.webhook
        ));
    }
    if show_pods && !listing.pods.is_empty() {
        out.push('\n');
        let header = ["NAMESPACE", "POD", "OWNER", "STATE", "FIRST DIFFERENCES"];
        let rows: Vec<[String; 5]> = listing
            .pods
            .iter()
            .map(|p| {
                let (state, diffs) = match p.state {
                    PodState::Outdated => {
                        let mut shown: Vec<&str> = p.differences.iter().take(3).map(String::as_str).collect();
                        let more = p.differences.len().saturating_sub(3);
                        let more_text = format!("(+{more} more)");
                        if more > 0 {
                            shown.push(&more_text);
                        }
                        ("outdated", shown.join("; "))
                    }
                    PodState::NotInjected => ("not injected", "no sidecar".to_string()),
                };
                [p.namespace.clone(), p.pod.clone(), p.owner.clone(), state.to_string(), diffs]
            })
            .collect();
        out.push_str(&table(&header, &rows));
        out.push_str("\nTo restart:\n");
        let mut seen = BTreeSet::new();
        for p in &listing.pods {
            if seen.insert(&p.restart) {
                out.push_str(&format!("  {}\n", p.restart));
            }
        }
    }
    Ok(out)
}
