//! mesh-init: istio-iptables-compatible traffic capture for a pod's network namespace.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mesh_init::run::run(&args, |k| std::env::var(k).ok(), &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mesh-init: {:#}", failure.error);
            ExitCode::from(u8::try_from(failure.code).unwrap_or(1))
        }
    }
}
