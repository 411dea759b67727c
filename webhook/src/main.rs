//! mesh-webhook: parse flags, run the server, map failures to exit codes.

use clap::Parser as _;
use mesh_webhook::cli::{Args, EX_FAILURE, EX_USAGE};

/// Small, frequent allocations dominate a review (JSON in, patch out); mimalloc handles them with
/// far less contention between worker threads than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let source = match mesh_webhook::run::cert_source(&args, std::env::var("POD_NAMESPACE").ok()) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("mesh-webhook: {e}");
            std::process::exit(EX_USAGE);
        }
    };
    let logging = mesh_webhook::run::init_logging(args.log_format);
    let code = match mesh_webhook::run::runtime(args.worker_threads) {
        Ok(runtime) => {
            let result = runtime.block_on(mesh_webhook::run(args, source, logging.review_log));
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "mesh-webhook failed");
                    EX_FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("mesh-webhook: cannot start the runtime: {e}");
            EX_FAILURE
        }
    };
    // Write the buffered log lines before exiting (exit skips destructors).
    drop(logging.guard);
    std::process::exit(code);
}
