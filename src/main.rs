//! The `komisi` binary: parse the command line, then hand over to `app`.
use clap::{Parser, Subcommand};
use komisi::config::Config;

#[derive(Parser)]
#[command(name = "komisi", version, about = "Affiliate-commission and buyer-reward engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP and process events.
    Serve(Config),
    /// Apply pending migrations and exit.
    Migrate(Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(config) => komisi::app::serve(config).await?,
        Command::Migrate(config) => komisi::app::migrate(config).await?,
    }
    Ok(())
}
