//! The `komisi` binary: parse the command line, then hand over to `app`.
//! With no subcommand it serves, as `komisi serve` does.
use clap::{Parser, Subcommand};
use komisi::config::Config;

/// At saturation glibc's malloc took about a quarter of the server's CPU
/// (`perf`: `_int_malloc`, `_int_free`, `malloc_consolidate`): every request
/// builds and drops strings and rows across threads. mimalloc's per-thread
/// pages make those cheap (docs/PERFORMANCE.md, sixteenth session).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "komisi",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KOMISI_GIT_SHA"), ")"),
    about = "Affiliate-commission and buyer-reward engine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Settings of `serve` (the default command).
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP and process events (the default).
    Serve(Config),
    /// Apply pending migrations and exit.
    Migrate(Config),
    /// Run the rules on an event's bundle (GET /admin/events/{id}/bundle)
    /// offline: no database, no network. Exit 0: the ledger equals the
    /// entitlement; 1: they differ; 2: the bundle is invalid.
    Reproduce {
        /// The bundle (JSON).
        file: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    // KOMISI_LOG_FORMAT=json: one JSON object per line, span fields (request_id,
    // event_id, order_id) included, for log pipelines.
    if std::env::var("KOMISI_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt().json().with_current_span(true).with_span_list(true).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let cli = Cli::parse();
    if let Some(Command::Reproduce { file }) = &cli.command {
        std::process::exit(komisi::app::reproduce(file));
    }
    match cli.command {
        None => komisi::app::serve(cli.serve).await?,
        Some(Command::Serve(config)) => komisi::app::serve(config).await?,
        Some(Command::Migrate(config)) => komisi::app::migrate(config).await?,
        Some(Command::Reproduce { .. }) => unreachable!("handled above"),
    }
    Ok(())
}
