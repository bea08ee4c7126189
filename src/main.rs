//! scimd: a SCIM 2.0 provisioning server whose every write is an event in a durable log.
//!
//! This file only wires the parts together: configuration, the store, the service, the HTTP front,
//! the log subscribers and the operator commands.

mod cli;
mod config;
mod fanout;
mod http;
mod metrics;
mod service;
mod store;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

use config::{CommonConfig, LogFormat, ServeConfig};
use fanout::projection::Runner;
use fanout::status::StatusBoard;
use http::ApiKeys;

/// mimalloc instead of glibc's allocator: a request allocates and frees many small JSON values,
/// and under load glibc's malloc/free took a fifth of the CPU of a filtered GET.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use service::{Service, Subscribers};
use store::Store;

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
    /// Rebuild one projection from position 0 (with the server stopped, or through it while it runs).
    Replay {
        /// The projection to rebuild: file, sql, ldap, mongo, jumpcloud or scim; or set-push (server
        /// stopped) to push every security event again.
        #[arg(long)]
        projection: String,
        /// Empty the backend first.
        #[arg(long)]
        fresh: bool,
        /// With --fresh: empty the backend even when it holds rows the log cannot rebuild (rows
        /// scimd did not write, such as an earlier server's that were never imported).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        config: ServeConfig,
    },
    /// Import an earlier server's Users and Groups (files, SQL, MongoDB or LDAP) into the log,
    /// keeping their ids; run again, it imports only what changed. The server must be stopped.
    Import {
        #[command(flatten)]
        args: cli::import::ImportArgs,
        #[command(flatten)]
        config: ServeConfig,
    },
    /// Operate on a projection.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Ask a running server for `GET /health`: exit 0 when it answers 200, 1 otherwise (the
    /// container's HEALTHCHECK).
    Health(cli::health::HealthConfig),
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
    /// Check the log (positions, decoding, the hash chain, each resource's history) and that the
    /// read model, its indexes and the subscribers' bookkeeping equal what the log says. Reads
    /// only; exits 1 if anything is wrong.
    Verify {
        /// Memory (MiB) the store's page cache may use while verifying.
        #[arg(long, env = "STORE_CACHE_MB", default_value_t = 1024)]
        store_cache_mb: usize,
    },
}

#[derive(Subcommand)]
enum ProjectionCommand {
    /// Re-apply the changes a projection's backend refused (parked changes).
    Retry {
        /// The projection: file, sql, ldap, mongo, jumpcloud or scim; amqp for parked AMQP messages,
        /// set-push for parked security events.
        name: String,
        #[command(flatten)]
        config: ServeConfig,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before anything creates a file: the store and projection documents hold personal data.
    cli.common.files_mode.apply();
    init_tracing(&cli.common);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// A failure as the operator reads it: one line on stderr, what failed and why (each cause after a
/// `: `), which names the setting or path and so how to fix it. The backtrace only when the
/// operator asked for one (`RUST_BACKTRACE`), on the lines after: never before the message.
fn report(e: &anyhow::Error) {
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("scimd: error: {line}");
    let trace = e.backtrace();
    if trace.status() == std::backtrace::BacktraceStatus::Captured {
        eprintln!("backtrace (RUST_BACKTRACE is set):\n{trace}");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let data_path = &cli.common.data_path;
    match cli.command {
        Command::Serve(config) => runtime.block_on(serve(cli.common, config)),
        Command::Log(LogCommand::Tail { from, follow }) => {
            runtime.block_on(cli::log::tail(data_path, from, follow))
        }
        Command::Log(LogCommand::Verify { store_cache_mb }) => cli::log::verify(
            data_path,
            &*cli.common.registry()?,
            store_cache_mb.saturating_mul(1024 * 1024),
        ),
        Command::Replay {
            projection,
            fresh,
            yes,
            config,
        } => runtime.block_on(cli::projection::replay(
            data_path,
            cli.common.registry()?,
            &config,
            &projection,
            cli::projection::Fresh::from_flags(fresh, yes),
        )),
        Command::Import { args, config } => runtime.block_on(cli::import::run(
            data_path,
            cli.common.registry()?,
            &config,
            &args,
        )),
        Command::Projection(ProjectionCommand::Retry { name, config }) => runtime.block_on(
            cli::projection::retry(data_path, cli.common.registry()?, &config, &name),
        ),
        Command::Health(config) => runtime.block_on(cli::health::check(&config)),
    }
}

/// Log lines go to stderr. Text lines are coloured only when stderr is a terminal and `NO_COLOR` is
/// not set: a container's log, a pipe or a file gets plain text, never escape sequences.
fn init_tracing(common: &CommonConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&common.loglevel)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
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
    let backends = fanout::backends::select(&config.projections, &common.data_path)?;
    let fanout_base = cli::projection::fanout_base(&config);
    // A key that cannot sign, SETs without an issuer or a push URL that is not https stop
    // start-up here, before the store is opened, not a delivery later.
    let security_events = fanout::set::SecurityEvents::from_settings(
        &config.security_events,
        config.public_url(),
        fanout_base.clone(),
    )?;
    let push_receiver = match (&security_events, &config.security_events.push_url) {
        (Some(_), Some(url)) if !url.trim().is_empty() => {
            Some(fanout::set::receiver::Receiver::new(
                url,
                config.security_events.push_token.clone(),
                config.security_events.push_allow_http,
            )?)
        }
        _ => None,
    };
    // A broken SCHEMA_PATH stops start-up, naming the file and the reason.
    let registry = common.registry()?;
    let store = Arc::new(Store::open(
        &common.data_path,
        registry.clone(),
        config.store_cache_bytes(),
    )?);
    store.set_stall_timeout(std::time::Duration::from_secs(config.writer_stall_timeout));
    let board = Arc::new(StatusBoard::default());
    let publisher = config.amqp.url.clone().map(|url| {
        let publisher = Arc::new(fanout::amqp::Publisher::new(
            store.clone(),
            board.clone(),
            config.amqp.clone(),
            url,
            fanout_base.clone(),
        ));
        tokio::spawn(publisher.clone().run());
        publisher
    });
    let pusher = match (&security_events, push_receiver) {
        (Some(core), Some(receiver)) => {
            let pusher = Arc::new(fanout::set::push::Pusher::new(
                store.clone(),
                board.clone(),
                core.clone(),
                receiver,
            ));
            tokio::spawn(pusher.clone().run());
            Some(pusher)
        }
        _ => None,
    };
    let mut controls = BTreeMap::new();
    for backend in backends {
        let (tx, rx) = mpsc::channel(8);
        controls.insert(backend.name().to_owned(), tx);
        let runner = Runner::new(backend, store.clone(), board.clone(), fanout_base.clone());
        tokio::spawn(runner.run(rx));
    }
    let limits = scim::filter::Limits {
        max_length: config.filter_max_length,
        max_depth: config.filter_max_depth,
        max_terms: config.filter_max_terms,
    };
    let (poll_wait, poll_redeliver) = config
        .set_poll
        .periods(config.request_timeout, security_events.is_some())?;
    let poller = security_events.clone().map(|core| {
        Arc::new(fanout::poll::Poller::new(
            store.clone(),
            fanout::poll::SetSource::new(core),
            poll_wait,
            poll_redeliver,
        ))
    });
    let mut service = Service::new(
        store.clone(),
        registry,
        config.page_size,
        limits,
        config.cursor_timeout,
        service::Tuning {
            patch_time_limit: std::time::Duration::from_millis(config.patch_time_limit_ms),
            read_threads: usize::try_from(config.read_threads).unwrap_or(usize::MAX),
            asynchronous: service::AsyncSettings {
                enabled: config.async_requests,
                max_pending: config.async_max_pending,
                retention: std::time::Duration::from_secs(
                    config.async_retention_hours.saturating_mul(3600),
                ),
                max_wait: std::time::Duration::from_secs(config.request_timeout / 2),
            },
        },
    )
    .with_security_events(security_events);
    if let Some(poller) = poller {
        service = service.with_poller(poller);
    }
    let service = Arc::new(service);
    service.start_async();
    let subscribers = Arc::new(Subscribers::new(board, controls, publisher, pusher));
    let store_id = http::reach::store_id(&common.data_path)?;
    // Told when shutdown starts, so that long polls answer instead of holding it up.
    let closing = service.clone();
    let app = http::app(
        service,
        subscribers,
        Arc::new(keys),
        &config,
        store_id.clone(),
    );
    tracing::info!(listen = %config.listen, data_path = %common.data_path.display(), base_path = %config.base_path(), "scimd serving");
    // Where a person starts: the explorer and the document, as a browser on this machine reaches them.
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let root = format!(
        "{scheme}://{}{}",
        http::reach::connect_addr(config.listen),
        config.base_path()
    );
    tracing::info!(explorer = %format!("{root}/"), openapi = %format!("{root}/openapi.json"), "API explorer");
    let served = http::serve(app, &config, &common.data_path, &store_id, move || {
        closing.shutting_down();
    })
    .await;
    http::reach::withdraw(&common.data_path, std::process::id());
    let closed = store.close().await;
    served.with_context(|| format!("cannot serve on {}", config.listen))?;
    anyhow::ensure!(
        closed,
        "the store was not closed cleanly (its writer was stuck); the next start repairs it"
    );
    tracing::info!("store closed");
    Ok(())
}
