//! `kubectl-mesh`: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    ExitCode::from(kubectl_mesh::main_with(std::env::args_os(), &mut stdout, &mut stderr))
}
