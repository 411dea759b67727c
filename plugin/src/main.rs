//! `kubectl-mesh`: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kubectl_mesh::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match kubectl_mesh::run(cli, &mut stdout) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(kubectl_mesh::cli::EXIT_FAILED)
        }
    }
}
