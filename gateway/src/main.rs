//! `residency-gateway --config gateway.toml`: load and validate the config (exit 64 on any
//! problem, before binding anything), set up logging, bind the listeners, and run until
//! SIGTERM or Ctrl-C, then drain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use residency_config::gateway::GatewayConfig;
use residency_config::load::{load, ProcessEnv};
use residency_gateway::Listeners;
use residency_http::logging::otlp::Otlp;
use residency_http::logging::LogFormat;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Residency Gateway: authenticating, residency-routing reverse proxy.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of the gateway's TOML config (`RESIDENCY__SECTION__KEY` variables override it).
    #[arg(long, env = "RESIDENCY_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Log line format: `text` (default) or `json` (one object per line).
    #[arg(long, env = residency_http::logging::FORMAT_ENV, default_value = "text")]
    log_format: LogFormat,
}

/// mimalloc instead of the system allocator: the request path allocates and frees small
/// buffers (header maps, bytes, futures) on every request, and glibc's malloc/free showed as
/// about 7 % of the gateway's CPU under load (`perf`, `bench/compare.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    // Logging starts once the config is known (its `[tracing]` section adds the span
    // exporter); a config problem is written to standard error either way.
    let cfg: GatewayConfig = match load(&args.config, &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The span exporter's batch task runs on the runtime: installed inside it.
    let otlp = cfg.tracing.otlp("residency-gateway").map(|t| Otlp {
        endpoint: t.endpoint,
        service_name: t.service_name,
        sample_ratio: t.sample_ratio,
        // A client's sampled flag does not decide what the gateway records.
        follow_parent: false,
    });
    let guard = {
        let _rt = runtime.enter();
        match residency_http::logging::init_with_otlp(args.log_format, otlp.as_ref()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{}: {e}", args.config.display());
                return ExitCode::from(64);
            }
        }
    };
    let result = runtime.block_on(serve(cfg));
    // Flushes the last spans while the runtime still runs the exporter.
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("residency-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: GatewayConfig) -> anyhow::Result<()> {
    let public = TcpListener::bind(cfg.listen.public)
        .await
        .with_context(|| format!("listen.public {}", cfg.listen.public))?;
    let admin = match cfg.listen.admin {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen.admin {addr}"))?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    residency_http::shutdown::watch(shutdown.clone()).context("signal handlers")?;
    residency_gateway::run(cfg, Listeners { public, admin }, shutdown).await
}
