//! `kubectl_complete-mesh`: kubectl's plugin completion hook. kubectl (1.26 and later) runs it for
//! `kubectl mesh <TAB>` with the words after `kubectl mesh` and reads cobra's `__complete` protocol.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    ExitCode::from(kubectl_mesh::completion::hook_main(std::env::args_os().skip(1), &mut stdout))
}
