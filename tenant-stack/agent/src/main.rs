//! `vouch-agent`: load the config, start the agent, serve until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use vouch_agent::config::{AgentConfig, CONFIG_ENV};

/// Vouch node agent (keylime agent API 2.x).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file; every key can also be set by VOUCH_AGENT_<KEY>.
    #[arg(long, env = CONFIG_ENV)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = AgentConfig::load(args.config.as_deref()).context("loading the configuration")?;
    let mut agent = vouch_agent::start(config)
        .await
        .context("starting the agent")?;
    let stop = agent.stop_handle();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
    });
    agent.wait().await.context("serving the agent API")?;
    Ok(())
}
