//! The mesh-init binary's command line: exit codes, `--dry-run` output and error messages that
//! need no privileges. (Real application is tested in tests/tests/init_*.rs, in network namespaces.)

use std::process::{Command, Output};

fn mesh_init(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-init"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("mesh-init runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    for (args, needle) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["-p", "notaport"][..], "-p/--envoy-port"),
        (&["-m", "SIDEWAYS"][..], "SIDEWAYS"),
        (&["-p"][..], "needs a value"),
        (&["positional"][..], "positional"),
    ] {
        let out = mesh_init(args, &[]);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let out = mesh_init(&["--force-iptables-binary=ipfw"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force-iptables-binary (FORCE_IPTABLES_BINARY): \"ipfw\""));
    let out = mesh_init(&["--dry-run"], &[("INBOUND_INTERCEPTION_MODE", "BOGUS")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("env INBOUND_INTERCEPTION_MODE"), "{}", text(&out.stderr));
}

#[test]
fn help_exits_0() {
    let out = mesh_init(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("usage: mesh-init"));
}

/// docs/init.md's flag table says what `mesh-init --help` says, row for row (backticks aside):
/// both come from the table `CaptureConfig` parses.
#[test]
fn docs_flag_table_equals_help() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/init.md")).expect("docs/init.md");
    let rows: Vec<String> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| Flag | Env |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l.trim_matches('|').split(" | ").map(|c| c.trim().replace('`', "")).collect();
            assert_eq!(cells.len(), 4, "docs/init.md flag row {l:?} must have 4 cells");
            let list = |c: &str| -> Vec<String> {
                if c.is_empty() || c == "(env only)" { vec![] } else { c.split(", ").map(str::to_owned).collect() }
            };
            let env = list(&cells[1]);
            let env: Vec<&str> = env.iter().map(String::as_str).collect();
            mesh_init::run::help_row(&list(&cells[0]), &env, &cells[2], &cells[3])
        })
        .collect();
    assert!(!rows.is_empty(), "no flag table (| Flag | Env | Default | Meaning |) in docs/init.md");
    let help = text(&mesh_init(&["--help"], &[]).stdout);
    let table = help.split_once("\n\n  ").map(|(_, t)| format!("  {t}")).expect("help has a flag table");
    assert_eq!(rows.concat(), table, "docs/init.md's flag table differs from mesh-init --help");
}

#[test]
fn dry_run_prints_the_injected_defaults_with_istio_arguments() {
    let mut args = mesh_core::capture::ISTIO_DEFAULT_INIT_ARGS.to_vec();
    args.extend(["--log_output_level=default:info", "--dry-run"]);
    let out = mesh_init(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("* nat\n-N ISTIO_INBOUND\n"), "{stdout}");
    assert!(
        stdout
            .contains("-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN\n-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    );
    assert!(stdout.trim_end().ends_with("COMMIT"));

    let out = mesh_init(&args, &[("NATIVE_NFTABLES", "true")]);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("add table inet istio-proxy-nat\nflush table inet istio-proxy-nat\n"), "{stdout}");
    assert!(
        stdout.contains("add rule inet istio-proxy-nat istio-inbound meta l4proto tcp counter jump istio-in-redirect")
    );
}

#[test]
fn unresolvable_owner_group_is_named_with_the_fix() {
    let out = mesh_init(&["-i", "*"], &[("ISTIO_OUTBOUND_OWNER_GROUPS", "no-such-group-mesh")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown group \"no-such-group-mesh\" in ISTIO_OUTBOUND_OWNER_GROUPS"), "{stderr}");
    assert!(stderr.contains("numeric GID"), "{stderr}");
}
