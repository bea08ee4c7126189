//! `scimd replay` and `scimd projection retry`. With the server stopped they open the store
//! themselves; while `scimd serve` holds it, they ask that server (admin routes), found where it
//! published itself inside DATA_PATH and checked to serve that very store (`http::reach`), and
//! follow its progress in `/status`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::server_client;
use crate::config::ServeConfig;
use crate::fanout::amqp::{self, Publisher};
use crate::fanout::backends;
use crate::fanout::projection::Runner;
use crate::fanout::set::SecurityEvents;
use crate::fanout::set::push::{self, Pusher};
use crate::fanout::set::receiver::Receiver;
use crate::fanout::status::StatusBoard;
use crate::http::{client_key, reach};
use crate::store::{Store, StoreError, StoreReader, Write, WriteContext};
use projections::ProjectionError;
use projections::ResourceKind;
use scim::ResourceType;
use scim::schema::Registry;

/// Whether a replay empties the backend first and, if so, whether rows the log cannot rebuild may
/// go with the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Rebuild over what the backend holds (upserts by id).
    No,
    /// Empty the backend first, unless it holds rows the log does not: then refuse.
    Checked,
    /// Empty the backend first, whatever it holds (`--fresh --yes`).
    Confirmed,
}

impl Fresh {
    /// From `--fresh` and `--yes` (`--yes` alone changes nothing).
    pub fn from_flags(fresh: bool, yes: bool) -> Fresh {
        match (fresh, yes) {
            (false, _) => Fresh::No,
            (true, false) => Fresh::Checked,
            (true, true) => Fresh::Confirmed,
        }
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Rebuilds projection `name` from position 0.
pub async fn replay(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
    name: &str,
    fresh: Fresh,
) -> anyhow::Result<()> {
    if name == push::NAME {
        return replay_set_push(data_path, registry, config).await;
    }
    if fresh == Fresh::Checked {
        refuse_rows_the_log_lacks(data_path, config, name).await?;
    }
    let fresh = fresh != Fresh::No;
    match open_locally(data_path, registry, config, name, "--projection")? {
        Some((store, mut runner)) => {
            let target = store.snapshot()?.position()?;
            let bar = progress_bar(target);
            let result = runner.replay(fresh, |at| bar.set_position(at)).await;
            bar.finish();
            store.close().await;
            let reached = result?;
            eprintln!("{name}: rebuilt from the log up to position {reached}");
            Ok(())
        }
        None => {
            let client = ServerClient::new(data_path, config).await?;
            let answer = client
                .post(&format!("/admin/projections/{name}/rebuild?fresh={fresh}"))
                .await?;
            let target = answer["target"].as_u64().unwrap_or(0);
            eprintln!("scimd serve holds the store: it rebuilds {name} up to position {target}");
            let bar = progress_bar(target);
            loop {
                let status = client.get("/status").await?;
                let sub = &status["subscribers"][name];
                let checkpoint = sub["checkpoint"].as_u64().unwrap_or(0);
                bar.set_position(checkpoint.min(target));
                if let Some(e) = sub["lastError"].as_str() {
                    bar.set_message(format!("retrying: {e}"));
                }
                if checkpoint >= target && sub["state"] != "rebuilding" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            bar.finish();
            eprintln!("{name}: rebuilt up to position {target}");
            Ok(())
        }
    }
}

/// Fails when the backend of projection `name` holds Users or Groups whose ids the store does not
/// hold: rows scimd did not write (an earlier server's, never imported), which `--fresh` would
/// delete for good. Reads the store read-only, so it works beside a running server too. A backend
/// whose layout is not there yet (no table, OU or directory) holds nothing.
async fn refuse_rows_the_log_lacks(
    data_path: &Path,
    config: &ServeConfig,
    name: &str,
) -> anyhow::Result<()> {
    let backend = backend_named(data_path, config, name, "--projection")?;
    let cannot_check = |e: ProjectionError| {
        anyhow::anyhow!(
            "cannot see what the {name} backend holds before emptying it ({e}); \
             pass --yes to empty it without looking"
        )
    };
    let mut source = match backend.source().await {
        Ok(source) => source,
        Err(ProjectionError::Config(_)) => return Ok(()),
        Err(e) => return Err(cannot_check(e)),
    };
    let reader = if data_path.join("scimd.redb").exists() {
        Some(StoreReader::open(data_path, config.store_cache_bytes())?)
    } else {
        None
    };
    let mut unknown = [0usize; 2];
    let mut examples: Vec<String> = Vec::new();
    for (slot, (kind, rt)) in [
        (ResourceKind::User, ResourceType::User),
        (ResourceKind::Group, ResourceType::Group),
    ]
    .into_iter()
    .enumerate()
    {
        let held = match source.read(kind).await {
            Ok(held) => held,
            Err(ProjectionError::Config(_)) => continue,
            Err(e) => return Err(cannot_check(e)),
        };
        let snapshot = reader.as_ref().map(StoreReader::snapshot).transpose()?;
        for h in held {
            let (known, what) = match (&h, &snapshot) {
                (Ok(found), Some(s)) => (s.get(rt, &found.id)?.is_some(), found.id.clone()),
                (Ok(found), None) => (false, found.id.clone()),
                (Err(u), _) => (false, u.location.clone()),
            };
            if !known {
                unknown[slot] += 1;
                if examples.len() < 3 {
                    examples.push(format!("{} {what}", rt.name()));
                }
            }
        }
    }
    if unknown.iter().sum::<usize>() > 0 {
        anyhow::bail!(
            "the {name} backend holds {} User(s) and {} Group(s) that scimd's log does not hold \
             (such as {}): --fresh would delete them, and no rebuild brings them back. Import them \
             first (scimd import --from …), or pass --yes to delete them",
            unknown[0],
            unknown[1],
            examples.join(", ")
        );
    }
    Ok(())
}

/// Re-applies projection `name`'s parked changes (`amqp`: publishes the parked messages again).
pub async fn retry(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
    name: &str,
) -> anyhow::Result<()> {
    if name == amqp::NAME {
        return retry_amqp(data_path, registry, config).await;
    }
    if name == push::NAME {
        return retry_set_push(data_path, registry, config).await;
    }
    match open_locally(data_path, registry, config, name, "`projection retry`")? {
        Some((store, mut runner)) => {
            let fixed = runner
                .retry_parked()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"));
            finish_retry(store, name, fixed, "parked change(s) applied").await
        }
        None => {
            ask_server_to_retry(
                data_path,
                config,
                name,
                &format!("retry {name}'s parked changes"),
            )
            .await
        }
    }
}

/// Sets the SET pusher's checkpoint back to the start of the log, so that the next `scimd serve`
/// pushes every SET again, each with the `jti` it had the first time. Only with the server
/// stopped: the running pusher saves its own progress.
async fn replay_set_push(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
) -> anyhow::Result<()> {
    let store = match Store::open(data_path, registry, config.store_cache_bytes()) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => anyhow::bail!(
            "scimd serve holds the store: stop it, run this again, then start it to push every SET again"
        ),
        Err(e) => return Err(e.into()),
    };
    let ctx = || WriteContext {
        actor: "server".into(),
        txn_id: format!("replay-{}", push::NAME),
    };
    // `within` first: a crash between the two leaves a state behind the old one, never ahead.
    // The asynchronous outcomes still kept are pushed again too.
    for name in [push::WITHIN, push::NAME, push::OUTCOMES] {
        let written = store
            .write(
                Write::Checkpoint {
                    name: name.into(),
                    position: 0,
                },
                ctx(),
            )
            .await;
        if let Err(e) = written {
            store.close().await;
            anyhow::bail!("the {name} checkpoint could not be reset: {}", e.detail);
        }
    }
    store.close().await;
    eprintln!(
        "{}: checkpoint reset; the next scimd serve pushes every SET again from position 1, with the same jti",
        push::NAME
    );
    Ok(())
}

/// Pushes the parked SETs again: here when the store is free, else through the running server.
async fn retry_set_push(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
) -> anyhow::Result<()> {
    let Some(store) = open_store(data_path, registry, config)? else {
        return ask_server_to_retry(data_path, config, push::NAME, "push its parked SETs again")
            .await;
    };
    let pushed = async {
        let settings = &config.security_events;
        let url = settings.push_url.clone().context(
            "SET_PUSH_URL is not set: set it as for scimd serve to push parked SETs",
        )?;
        let core = SecurityEvents::from_settings(settings, config.public_url(), fanout_base(config))?
            .context("SETs are off: set SET_SIGNING_SECRET, SET_SIGNING_KEY or SET_SIGNING as for scimd serve")?;
        let receiver = Receiver::new(&url, settings.push_token.clone(), settings.push_allow_http)?;
        let pusher = Pusher::new(
            store.clone(),
            Arc::new(StatusBoard::default()),
            core,
            receiver,
        );
        Ok(pusher.retry_parked().await?)
    }
    .await;
    finish_retry(store, push::NAME, pushed, "parked SET(s) delivered").await
}

/// Publishes the parked AMQP messages again: here when the store is free, else through the
/// running server.
async fn retry_amqp(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
) -> anyhow::Result<()> {
    let Some(store) = open_store(data_path, registry, config)? else {
        return ask_server_to_retry(
            data_path,
            config,
            amqp::NAME,
            "publish the parked AMQP messages again",
        )
        .await;
    };
    let published = async {
        let url = config
            .amqp
            .url
            .clone()
            .context("AMQP is not set: set it as for scimd serve to publish parked messages")?;
        let publisher = Publisher::new(
            store.clone(),
            Arc::new(StatusBoard::default()),
            config.amqp.clone(),
            url,
            fanout_base(config),
        );
        Ok(publisher.retry_parked().await?)
    }
    .await;
    finish_retry(store, amqp::NAME, published, "parked message(s) published").await
}

/// The store, or `None` when a running server holds it (the commands then go through it).
fn open_store(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
) -> anyhow::Result<Option<Arc<Store>>> {
    match Store::open(data_path, registry, config.store_cache_bytes()) {
        Ok(store) => Ok(Some(Arc::new(store))),
        Err(StoreError::Locked(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Asks the running server that holds the store to retry subscriber `name`'s parked entries
/// (`what` says what it will do, for the operator).
async fn ask_server_to_retry(
    data_path: &Path,
    config: &ServeConfig,
    name: &str,
    what: &str,
) -> anyhow::Result<()> {
    let client = ServerClient::new(data_path, config).await?;
    client
        .post(&format!("/admin/projections/{name}/retry"))
        .await?;
    eprintln!("scimd serve holds the store: asked it to {what}; see /status");
    Ok(())
}

/// Closes the store after a local retry and reports how many entries `outcome` cleared
/// (`done` names them) and how many are still parked.
async fn finish_retry(
    store: Arc<Store>,
    name: &str,
    outcome: anyhow::Result<usize>,
    done: &str,
) -> anyhow::Result<()> {
    let left = store.snapshot()?.parked(name)?.len();
    store.close().await;
    let cleared = outcome?;
    eprintln!("{name}: {cleared} {done}, {left} still parked");
    Ok(())
}

fn backend_named(
    data_path: &Path,
    config: &ServeConfig,
    name: &str,
    given_as: &str,
) -> anyhow::Result<backends::Backend> {
    match backends::by_name(name, &config.projections, data_path) {
        Err(backends::SelectError::Unknown(_)) => anyhow::bail!(
            "{given_as} names `{name}`, which is not a projection; choose one of: {}",
            backends::NAMES.join(", ")
        ),
        other => Ok(other?),
    }
}

fn open_locally(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
    name: &str,
    given_as: &str,
) -> anyhow::Result<Option<(Arc<Store>, Runner)>> {
    let backend = backend_named(data_path, config, name, given_as)?;
    Ok(open_store(data_path, registry, config)?.map(|store| {
        let runner = Runner::new(
            backend,
            store.clone(),
            Arc::new(StatusBoard::default()),
            fanout_base(config),
        );
        (store, runner)
    }))
}

/// PUBLIC_URL + BASE_PATH, or BASE_PATH alone for relative URLs: what subscribers put in
/// `meta.location` and `$ref`.
pub fn fanout_base(config: &ServeConfig) -> String {
    format!(
        "{}{}",
        config.public_url().unwrap_or_default(),
        config.base_path()
    )
}

/// The server that holds DATA_PATH's store, reached where it published itself, with the
/// operator's API key.
struct ServerClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ServerClient {
    /// Finds the server holding `data_path` and checks that it serves that store: a server that
    /// reports another store id (another deployment now on that address) is an error, and
    /// nothing is asked of it.
    async fn new(data_path: &Path, config: &ServeConfig) -> anyhow::Result<ServerClient> {
        let key = client_key(config.api_key.as_deref(), data_path)
            .context("no API key: set API_KEY as for scimd serve")?;
        let reach = reach::read(data_path).with_context(|| {
            format!(
                "a scimd serve holds {} but has not published where it answers (server.json); \
                 stop it, or upgrade it, and run this command again",
                data_path.display()
            )
        })?;
        let expected = reach::existing_store_id(data_path)?
            .with_context(|| format!("{} has no store-id file", data_path.display()))?;
        let client = ServerClient {
            http: server_client(config.tls_cert.as_deref(), None)?,
            base: reach.url,
            key,
        };
        let status = client.get("/status").await?;
        let served = status["storeId"].as_str().unwrap_or("(none)");
        if served != expected {
            anyhow::bail!(
                "the server at {} serves store {served}, not the store of {} ({expected}); \
                 nothing was done",
                client.base,
                data_path.display()
            );
        }
        Ok(client)
    }

    async fn post(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("cannot reach scimd at {}", self.base))?;
        Self::json(resp).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("cannot reach scimd at {}", self.base))?;
        Self::json(resp).await
    }

    async fn json(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("scimd answered {status}: {}", body["detail"]);
        }
        Ok(body)
    }
}
