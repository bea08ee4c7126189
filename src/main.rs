//! scimd: a SCIM 2.0 provisioning server whose every write is an event in a durable log.
//!
//! This file only wires the parts together: configuration, the store, the service, the HTTP front
//! and the log tools.

mod config;
mod fanout;
mod http;
mod scim;
mod service;
mod store;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use config::{CommonConfig, LogFormat, ServeConfig};
use http::ApiKeys;
use service::Service;
use store::{Store, StoreReader};

/// SCIM 2.0 provisioning server backed by an append-only event log.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the SCIM API.
    Serve(ServeConfig),
    /// Read the event log.
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print events as JSON lines.
    Tail {
        /// First position to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new events as they are committed.
        #[arg(long)]
        follow: bool,
    },
    /// Check that positions are contiguous, every event decodes, and the read model equals a
    /// fold of the log. Exits 1 if anything is wrong.
    Verify,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.common);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(config) => runtime.block_on(serve(cli.common, config)),
        Command::Log(LogCommand::Tail { from, follow }) => {
            runtime.block_on(tail(&cli.common, from, follow))
        }
        Command::Log(LogCommand::Verify) => verify(&cli.common),
    }
}

fn init_tracing(common: &CommonConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&common.loglevel)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match common.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(common: CommonConfig, config: ServeConfig) -> anyhow::Result<()> {
    let keys = match &config.api_key {
        Some(spec) => ApiKeys::parse(spec)?,
        None => {
            let (keys, generated) = ApiKeys::load_or_generate(&common.data_path)?;
            let path = common.data_path.join("api-key");
            if generated {
                tracing::warn!(path = %path.display(), "API_KEY is not set: generated a key and saved it (mode 0600)");
            } else {
                tracing::info!(path = %path.display(), "API_KEY is not set: using the key saved earlier");
            }
            keys
        }
    };
    let store = Arc::new(Store::open(&common.data_path)?);
    let service = Arc::new(Service::new(store.clone(), config.page_size));
    let board = Arc::new(fanout::status::StatusBoard::default());
    // Subscribers describe resources without a request: PUBLIC_URL when set, else relative URLs.
    let fanout_base = format!(
        "{}{}",
        config.public_url().unwrap_or_default(),
        config.base_path()
    );
    if let Some(url) = config.amqp.url.clone() {
        let publisher = fanout::amqp::Publisher::new(
            store.clone(),
            board.clone(),
            config.amqp.clone(),
            url,
            fanout_base.clone(),
        );
        tokio::spawn(publisher.run());
    }
    let app = http::app(service, Arc::new(keys), board, &config);
    tracing::info!(listen = %config.listen, data_path = %common.data_path.display(), base_path = %config.base_path(), "scimd serving");
    let served = http::serve(app, &config).await;
    store.close().await;
    tracing::info!("store closed");
    served.with_context(|| format!("cannot serve on {}", config.listen))
}

async fn tail(common: &CommonConfig, from: u64, follow: bool) -> anyhow::Result<()> {
    let reader = StoreReader::open(&common.data_path)?;
    let mut next = from.max(1);
    let mut out = std::io::stdout().lock();
    loop {
        let events = reader.snapshot()?.events(next, 1000)?;
        for event in &events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
            next = event.position + 1;
        }
        out.flush()?;
        if events.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn verify(common: &CommonConfig) -> anyhow::Result<()> {
    let reader = StoreReader::open(&common.data_path)?;
    let report = store::verify::verify(&reader.snapshot()?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.problems.is_empty() {
        eprintln!(
            "ok: {} events, {} users, {} groups, {} memberships; read model equals the fold of the log",
            report.events, report.users, report.groups, report.memberships
        );
        Ok(())
    } else {
        anyhow::bail!("{} problem(s) found", report.problems.len())
    }
}
