use anyhow::Context;
use clap::Parser;
use vouch_registrar::{ConfigArgs, Registrar};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vouch_service::init_tracing();
    let config = ConfigArgs::parse().resolve().context("configuration")?;
    let registrar = Registrar::start(&config)
        .await
        .context("starting the registrar")?;
    let stop = registrar.shutdown_trigger();
    tokio::spawn(async move {
        vouch_service::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    registrar.wait().await.context("registrar")?;
    Ok(())
}
