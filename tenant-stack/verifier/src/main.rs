use anyhow::Context;
use clap::Parser;
use vouch_verifier::{ConfigArgs, Verifier};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vouch_service::init_tracing();
    let config = ConfigArgs::parse().resolve().context("configuration")?;
    let verifier = Verifier::start(&config)
        .await
        .context("starting the verifier")?;
    let stop = verifier.shutdown_trigger();
    tokio::spawn(async move {
        vouch_service::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    verifier.wait().await.context("verifier")?;
    Ok(())
}
