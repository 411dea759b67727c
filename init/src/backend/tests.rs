use mesh_core::capture::CaptureConfig;

use super::*;
use crate::command::Recorder;
use crate::rules::{self, Facts};

fn set(args: &[&str]) -> RuleSet {
    rules::build(&CaptureConfig::from_args(args).expect("valid args"), &Facts::default()).expect("renders")
}

/// What iptables-save would print for the rules of `set` (appends only).
fn dump_of(set: &RuleSet) -> String {
    let input = iptables::restore_input(set, Family::V4);
    input
        .lines()
        .map(|l| {
            if let Some(t) = l.strip_prefix("* ") {
                format!("*{t}\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]")
            } else if let Some(c) = l.strip_prefix("-N ") {
                format!(":{c} - [0:0]")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ok(stdout: &str) -> Output {
    Output { status: 0, stdout: stdout.to_owned(), stderr: String::new() }
}

#[test]
fn fresh_namespace_is_applied_with_one_restore_per_family() {
    let rec = Recorder::new();
    let s = set(&["-i", "*", "-b", "*"]);
    assert_eq!(apply_iptables(&rec, Flavor::Legacy, &s, ApplyOptions::default()).expect("applies"), Outcome::Applied);
    let restores: Vec<_> = rec.commands().into_iter().filter(|c| c.stdin.is_some()).collect();
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0].line(), "iptables-legacy-restore --noflush -w");
}

#[test]
fn identical_rules_are_left_alone() {
    let s = set(&["-i", "*", "-b", "*"]);
    let rec = Recorder::new();
    rec.answer("iptables-save", ok(&dump_of(&s)));
    let outcome = apply_iptables(&rec, Flavor::Default, &s, ApplyOptions::default()).expect("no-op");
    assert_eq!(outcome, Outcome::Unchanged);
    assert!(rec.commands().iter().all(|c| c.stdin.is_none()), "no restore on an identical state");
    assert!(rec.commands().iter().any(|c| c.line().starts_with("iptables -t nat -C ISTIO_OUTPUT")));
}

#[test]
fn different_rules_fail_without_reconcile_and_are_replaced_atomically_with_it() {
    let old = set(&["-i", "*", "-b", "*", "-d", "15090,15021"]);
    let new = set(&["-i", "*", "-b", "*"]);
    let rec = Recorder::new();
    rec.answer("iptables-save", ok(&dump_of(&old)));
    let err = apply_iptables(&rec, Flavor::Default, &new, ApplyOptions::default()).expect_err("differs");
    let msg = err.to_string();
    assert!(msg.contains("--reconcile") && msg.contains("capture rules"), "{msg}");
    assert!(rec.commands().iter().all(|c| c.stdin.is_none()), "nothing applied on failure");

    let rec = Recorder::new();
    rec.answer("iptables-save", ok(&dump_of(&old)));
    let opts = ApplyOptions { reconcile: true, force: false };
    assert_eq!(apply_iptables(&rec, Flavor::Default, &new, opts).expect("replaced"), Outcome::Replaced);
    let restores: Vec<_> = rec.commands().into_iter().filter_map(|c| c.stdin).collect();
    assert_eq!(restores.len(), 1, "one transaction");
    let input = &restores[0];
    assert_eq!(input.matches("* nat").count(), 1, "cleanup and new rules in the same table block:\n{input}");
    let pos = |n: &str| input.find(n).unwrap_or_else(|| panic!("{n} missing in\n{input}"));
    assert!(pos("-D OUTPUT -j ISTIO_OUTPUT") < pos("-F ISTIO_OUTPUT"));
    assert!(pos("-F ISTIO_REDIRECT") < pos("-X ISTIO_OUTPUT"));
    assert!(pos("-X ISTIO_OUTPUT") < pos("-N ISTIO_OUTPUT"));
    assert!(!input.contains("--dport 15021 -j RETURN\n-A"), "old exclusion is not re-added");
}

#[test]
fn cleanup_removes_only_owned_rules() {
    let dump = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\n:KUBE-X - [0:0]\n\
                -A OUTPUT -j ISTIO_OUTPUT\n-A OUTPUT -j KUBE-X\n-A OUTPUT -o eth9 -j RETURN\n\
                -A ISTIO_OUTPUT -m comment --comment \"two words\" -j RETURN\nCOMMIT\n";
    let input = Saved::parse(dump).replace_input(None, Family::V4);
    assert_eq!(
        input,
        "* nat\n-D OUTPUT -j ISTIO_OUTPUT\n-D OUTPUT -o eth9 -j RETURN\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\nCOMMIT\n"
    );
    assert!(Saved::parse("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").replace_input(None, Family::V4).is_empty());
}

#[test]
fn missing_kernel_module_names_modprobe() {
    let rec = Recorder::new();
    rec.answer(
        "iptables-restore",
        Output {
            status: 2,
            stdout: String::new(),
            stderr: "iptables-restore v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist \
                     (do you need to insmod?)"
                .into(),
        },
    );
    let err = apply_iptables(&rec, Flavor::Default, &set(&[]), ApplyOptions::default()).expect_err("fails");
    assert!(matches!(err, ApplyError::KernelModule { .. }), "{err:?}");
    assert!(err.to_string().contains("modprobe ip_tables iptable_nat"), "{err}");
}

#[test]
fn capabilities_are_checked_from_proc_status() {
    let full = "Name:\tx\nCapEff:\t000001ffffffffff\n";
    assert!(check_capabilities(full, true).is_ok());
    let no_admin = "CapEff:\t000001ffffffefff\n";
    let err = check_capabilities(no_admin, true).expect_err("missing");
    assert!(err.to_string().contains("NET_ADMIN") && err.to_string().contains("capabilities.add"), "{err}");
    let no_raw = "CapEff:\t000001ffffffdfff\n";
    assert!(check_capabilities(no_raw, false).is_ok(), "nft needs no NET_RAW");
    assert!(check_capabilities(no_raw, true).expect_err("raw").to_string().contains("NET_RAW"));
}

#[test]
fn detection_prefers_the_flavor_that_holds_rules() {
    let rec = Recorder::new();
    rec.answer("iptables-nft-save", ok("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j KUBE-FIREWALL\nCOMMIT\n"));
    let d = detect(&rec, None, true).expect("detects");
    assert_eq!(d.flavor, Flavor::Nft);
    let rec = Recorder::new();
    rec.answer("iptables-legacy-save", ok("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j DOCKER\nCOMMIT\n"));
    assert_eq!(detect(&rec, None, true).expect("detects").flavor, Flavor::Legacy);
    assert_eq!(detect(&Recorder::new(), Some("iptables-legacy"), true).expect("forced").flavor, Flavor::Legacy);
    assert!(detect(&Recorder::new(), Some("ipfw"), true).is_err());
}

#[test]
fn detection_skips_legacy_when_the_kernel_lists_no_legacy_table() {
    let rec = Recorder::new();
    assert_eq!(detect(&rec, None, false).expect("detects").flavor, Flavor::Nft);
    assert!(rec.commands().iter().all(|c| !c.program.contains("legacy")), "{:?}", rec.commands());
}
