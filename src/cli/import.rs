//! `scimd import --from SOURCE [--dry-run]`: moves an earlier server's Users and Groups into the
//! log. The source is read with the backends' read side (`projections::source`), each resource is
//! validated and compared with the store (`service::import`), and what is new or changed is
//! written as `import` events, a Bulk-sized batch (1,000 resources) per transaction: Users first,
//! then Groups (a nested group after the groups it contains). The run ends with a report on
//! stderr and as a JSON file.
//!
//! The store must not be held by a running `scimd serve`: the import keeps the earlier server's
//! ids, which no SCIM request can choose, so it writes through the store's writer in this process
//! (see README, "Moving from the earlier server"). A dry run reads beside a running server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use projections::ResourceKind;
use projections::source::{Found, Held, Unreadable};
use serde_json::{Value, json};

use crate::config::{ProjectionConfig, ServeConfig};
use crate::fanout::backends::{self, Backend};
use crate::service::import::{self, Prepared};
use crate::store::{Outcome, Snapshot, Store, StoreError, StoreReader, Write, WriteContext};
use scim::schema::Registry;
use scim::{ResourceType, ScimError, ScimType};

/// Resources per transaction: the most a Bulk request may carry.
const BATCH: usize = 1000;

/// What `scimd import` was asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Where the earlier server's data is: `file:DIR`, `sql:DATABASE_URL`, `mongo:MONGO_DB`, or
    /// `ldap:` (the LDAP_* settings; `ldap:URL` names another server). Tables, collections and
    /// OUs are named by USER_MODEL_NAME / GROUP_MODEL_NAME.
    #[arg(long)]
    pub from: String,
    /// Read, validate and compare with the store, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to write the report (JSON). Default: DATA_PATH/import-report.json.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs the import; fails (exit 1) when a resource was refused or unreadable, after the others
/// were imported and the report written.
pub async fn run(
    data_path: &Path,
    registry: Arc<Registry>,
    config: &ServeConfig,
    args: &ImportArgs,
) -> anyhow::Result<()> {
    let from = redact(&args.from);
    let backend = backend_of(&args.from, &config.projections, data_path)?;
    let mut source = backend
        .source()
        .await
        .with_context(|| format!("cannot read {from}"))?;
    let users = source
        .read(ResourceKind::User)
        .await
        .with_context(|| format!("cannot read the Users of {from}"))?;
    let groups = source
        .read(ResourceKind::Group)
        .await
        .with_context(|| format!("cannot read the Groups of {from}"))?;
    drop(source);

    let target = Target::open(data_path, registry.clone(), config, args.dry_run)?;
    let mut run = Run {
        registry,
        target,
        report: Report::new(from.clone(), args.dry_run),
        pending: HashSet::new(),
        seen: HashMap::new(),
        claimed: HashMap::new(),
        deferred: Vec::new(),
        ctx: WriteContext {
            actor: "import".into(),
            txn_id: format!("import-{}", uuid::Uuid::new_v4()),
        },
        bar: progress_bar((users.len() + groups.len()) as u64),
    };
    let users = run.readable(ResourceType::User, users);
    let groups = run.readable(ResourceType::Group, groups);
    run.pending = users.iter().chain(&groups).map(|f| f.id.clone()).collect();

    let result = run.import_all(users, groups).await;
    run.bar.finish_and_clear();
    if let Target::Writable(store) = &run.target {
        store.close().await;
    }
    result?;

    let path = args
        .report
        .clone()
        .unwrap_or_else(|| data_path.join("import-report.json"));
    let document = run.report.document();
    let text = serde_json::to_string_pretty(&document).context("cannot encode the report")?;
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write the report to {}", path.display()))?;
    eprint!("{}", run.report.summary());
    eprintln!("report: {}", path.display());
    let refused = run.report.refused.len();
    if refused > 0 {
        anyhow::bail!("{refused} resource(s) of {from} were refused; see the report");
    }
    Ok(())
}

/// The backend `--from` names, with the model names and LDAP settings of `config`.
fn backend_of(from: &str, config: &ProjectionConfig, data_path: &Path) -> anyhow::Result<Backend> {
    let usage = "expected file:DIR, sql:DATABASE_URL, mongo:MONGO_DB or ldap:";
    let (kind, rest) = from
        .split_once(':')
        .with_context(|| format!("--from {:?}: {usage}", redact(from)))?;
    let rest = rest.trim();
    let needs = |what: &str| anyhow::anyhow!("--from {kind}: needs {what} after the colon");
    Ok(match kind {
        "file" if !rest.is_empty() => Backend::File(PathBuf::from(rest)),
        "file" => return Err(needs("a directory")),
        "sql" if !rest.is_empty() => Backend::Sql {
            url: rest.to_owned(),
            users: config.user_model_name.clone(),
            groups: config.group_model_name.clone(),
        },
        "sql" => return Err(needs("a database URL")),
        "mongo" if !rest.is_empty() => Backend::Mongo {
            uri: rest.to_owned(),
            settings: projections::mongo::MongoSettings {
                database: config.mongo_database.clone(),
                users: config.user_model_name.clone(),
                groups: config.group_model_name.clone(),
            },
        },
        "mongo" => return Err(needs("a connection string")),
        "ldap" => {
            let mut config = config.clone();
            if !rest.is_empty() {
                config.ldap_hostname = Some(rest.to_owned());
            }
            backends::by_name("ldap", &config, data_path)?
        }
        other => anyhow::bail!("--from {other}: unknown source; {usage}"),
    })
}

/// A URL or connection string without its password, for messages and the report.
fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => text.to_owned(),
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} resources  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Where the import writes (or, in a dry run, only reads).
enum Target {
    Writable(Arc<Store>),
    ReadOnly(StoreReader),
}

impl Target {
    /// The store, opened for writing; in a dry run, read-only (beside a running server too), or
    /// opened (so created empty) when there is none yet.
    fn open(
        data_path: &Path,
        registry: Arc<Registry>,
        config: &ServeConfig,
        dry_run: bool,
    ) -> anyhow::Result<Target> {
        if dry_run && data_path.join("scimd.redb").exists() {
            return Ok(Target::ReadOnly(StoreReader::open(
                data_path,
                config.store_cache_bytes(),
            )?));
        }
        match Store::open(data_path, registry, config.store_cache_bytes()) {
            Ok(store) => Ok(Target::Writable(Arc::new(store))),
            Err(StoreError::Locked(path)) => anyhow::bail!(
                "scimd serve holds the store in {}: stop it, run scimd import, then start it again \
                 (an import keeps the earlier server's ids, which no SCIM request can set; \
                 --dry-run works beside a running server)",
                path.display()
            ),
            Err(e) => Err(e.into()),
        }
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        match self {
            Target::Writable(store) => store.snapshot(),
            Target::ReadOnly(reader) => reader.snapshot(),
        }
    }
}

/// One import in progress.
struct Run {
    registry: Arc<Registry>,
    target: Target,
    report: Report,
    /// Ids of the source's resources not refused so far: members may name them.
    pending: HashSet<String>,
    /// Every id read from the source so far, with its type: an id is one resource of either type.
    seen: HashMap<String, ResourceType>,
    /// In a dry run, the unique values (index key → id, or none once given up) the resources to
    /// import claim and release, as the writer's transactions would.
    claimed: HashMap<String, Option<String>>,
    /// Resources of this pass refused for a unique value another resource held: that one may
    /// give it up later in the run (a rename in the source), so they are tried again.
    deferred: Vec<(Found, ScimError)>,
    ctx: WriteContext,
    bar: ProgressBar,
}

impl Run {
    /// The resources that could be read; the others are refused in the report. An id the source
    /// holds twice, as the same type or as a User and a Group, is refused the second time.
    fn readable(&mut self, rt: ResourceType, held: Vec<Held>) -> Vec<Found> {
        let mut out = Vec::with_capacity(held.len());
        for h in held {
            match h {
                Ok(found) => match self.seen.get(&found.id) {
                    None => {
                        self.seen.insert(found.id.clone(), rt);
                        out.push(found);
                    }
                    Some(first) => {
                        let detail = if *first == rt {
                            "the source holds this id twice".to_owned()
                        } else {
                            format!(
                                "the source holds this id as a {} too, and an id names one \
                                 resource of either type",
                                first.name()
                            )
                        };
                        self.bar.inc(1);
                        self.report.refuse(
                            rt,
                            Some(&found.id),
                            None,
                            &ScimError::invalid_value(detail),
                        );
                    }
                },
                Err(Unreadable { location, reason }) => {
                    self.bar.inc(1);
                    self.report.refuse(
                        rt,
                        None,
                        Some(&location),
                        &ScimError::invalid_syntax(reason),
                    );
                }
            }
        }
        out
    }

    async fn import_all(&mut self, users: Vec<Found>, groups: Vec<Found>) -> anyhow::Result<()> {
        for chunk in users.chunks(BATCH) {
            self.batch(ResourceType::User, chunk).await?;
        }
        self.retry_deferred(ResourceType::User).await?;
        let groups = nested_last(groups);
        for chunk in groups.chunks(BATCH) {
            self.batch(ResourceType::Group, chunk).await?;
        }
        self.retry_deferred(ResourceType::Group).await?;
        // Groups in a cycle of nesting met a member group not written yet: now it is.
        if !self.report.dry_run {
            let snapshot = self.target.snapshot()?;
            let mut again = Vec::new();
            for g in &groups {
                let left_out = self.report.dangling.get(&g.id);
                let now_there = left_out.into_iter().flatten().any(|m| {
                    matches!(snapshot.get(ResourceType::Group, m), Ok(Some(_)))
                        || matches!(snapshot.get(ResourceType::User, m), Ok(Some(_)))
                });
                if now_there {
                    again.push(g.clone());
                }
            }
            drop(snapshot);
            for chunk in again.chunks(BATCH) {
                self.report.second_pass = true;
                self.batch(ResourceType::Group, chunk).await?;
            }
            self.retry_deferred(ResourceType::Group).await?;
        }
        Ok(())
    }

    /// Tries the resources refused for a unique value again, as long as a try imports one of them
    /// (each may free a value another needs); refuses the rest in the report.
    async fn retry_deferred(&mut self, rt: ResourceType) -> anyhow::Result<()> {
        loop {
            let deferred = std::mem::take(&mut self.deferred);
            if deferred.is_empty() {
                return Ok(());
            }
            let before = deferred.len();
            let founds: Vec<Found> = deferred.into_iter().map(|(f, _)| f).collect();
            self.bar.inc_length(founds.len() as u64);
            for chunk in founds.chunks(BATCH) {
                self.batch(rt, chunk).await?;
            }
            if self.deferred.len() == before {
                for (found, e) in std::mem::take(&mut self.deferred) {
                    self.pending.remove(&found.id);
                    self.report.refuse(rt, Some(&found.id), None, &e);
                }
                return Ok(());
            }
        }
    }

    /// Refuses `found`, or defers it when a unique value was in the way.
    fn refuse(&mut self, rt: ResourceType, found: &Found, e: ScimError) {
        if e.scim_type == Some(ScimType::Uniqueness) {
            self.deferred.push((found.clone(), e));
            return;
        }
        self.pending.remove(&found.id);
        self.report.refuse(rt, Some(&found.id), None, &e);
    }

    /// Prepares and writes one batch of resources of one type.
    async fn batch(&mut self, rt: ResourceType, chunk: &[Found]) -> anyhow::Result<()> {
        let snapshot = self.target.snapshot()?;
        let prepared = futures::future::join_all(chunk.iter().map(|f| {
            import::prepare(
                &self.registry,
                &snapshot,
                rt,
                &f.id,
                f.document.clone(),
                &self.pending,
            )
        }))
        .await;
        let mut writes = Vec::new();
        let mut written = Vec::new();
        for (found, prepared) in chunk.iter().zip(prepared) {
            match prepared {
                Err(e) => {
                    self.pending.remove(&found.id);
                    self.report.refuse(rt, Some(&found.id), None, &e);
                }
                Ok(Prepared::Unchanged) => self.report.unchanged(rt, &found.id),
                Ok(Prepared::Write { write, dangling }) if self.report.dry_run => {
                    let checked = match &write {
                        Write::Import { attributes, .. } => import::check_unique_dry(
                            &self.registry,
                            &snapshot,
                            rt,
                            &found.id,
                            attributes,
                            &mut self.claimed,
                        ),
                        _ => Err(unexpected()),
                    };
                    match checked {
                        Ok(()) => self.report.imported(rt, &found.id, dangling),
                        Err(e) => self.refuse(rt, found, e),
                    }
                }
                Ok(Prepared::Write { write, .. }) => {
                    writes.push(write);
                    written.push(found);
                }
            }
        }
        drop(snapshot);
        if let Target::Writable(store) = &self.target
            && !writes.is_empty()
        {
            let outcomes = import::write_batch(store, writes, self.ctx.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            for (found, outcome) in written.into_iter().zip(outcomes) {
                match outcome {
                    Ok(Outcome::Imported { left_out, .. }) => {
                        self.report.imported(rt, &found.id, left_out)
                    }
                    Ok(_) => {
                        self.report.refuse(rt, Some(&found.id), None, &unexpected());
                    }
                    Err(e) => self.refuse(rt, found, e),
                }
            }
        }
        self.bar.inc(chunk.len() as u64);
        Ok(())
    }
}

fn unexpected() -> ScimError {
    ScimError::unavailable("the store gave an unexpected answer")
}

/// Groups ordered so that a group comes after the groups among its members (Kahn's algorithm);
/// groups in a cycle of nesting come last, in source order.
fn nested_last(groups: Vec<Found>) -> Vec<Found> {
    let index: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id.as_str(), i))
        .collect();
    let member_groups = |g: &Found| -> Vec<usize> {
        g.document
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
            .filter_map(|v| index.get(v).copied())
            .filter(|&j| groups[j].id != g.id)
            .collect()
    };
    let mut waiting: Vec<usize> = groups.iter().map(|g| member_groups(g).len()).collect();
    let mut containers: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    for (i, g) in groups.iter().enumerate() {
        for j in member_groups(g) {
            containers[j].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..groups.len()).filter(|&i| waiting[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(groups.len());
    let mut placed = vec![false; groups.len()];
    while let Some(i) = ready.pop() {
        order.push(i);
        placed[i] = true;
        for &c in containers[i].iter().rev() {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(c);
            }
        }
    }
    order.extend((0..groups.len()).filter(|&i| !placed[i]));
    let mut slots: Vec<Option<Found>> = groups.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// What the import did, per resource type.
struct Report {
    from: String,
    dry_run: bool,
    started: chrono::DateTime<chrono::Utc>,
    /// Imported (or, in a dry run, to import) and unchanged, per type.
    imported: BTreeMap<&'static str, u64>,
    unchanged: BTreeMap<&'static str, u64>,
    /// Every refusal, with its reason.
    refused: Vec<Value>,
    /// Group id → members that point nowhere (left out of the group).
    dangling: BTreeMap<String, Vec<String>>,
    /// Whether groups in a cycle of nesting were written a second time.
    second_pass: bool,
}

impl Report {
    fn new(from: String, dry_run: bool) -> Report {
        Report {
            from,
            dry_run,
            started: chrono::Utc::now(),
            imported: BTreeMap::new(),
            unchanged: BTreeMap::new(),
            refused: Vec::new(),
            dangling: BTreeMap::new(),
            second_pass: false,
        }
    }

    fn imported(&mut self, rt: ResourceType, id: &str, dangling: Vec<String>) {
        if !self.second_pass {
            *self.imported.entry(rt.endpoint()).or_default() += 1;
        }
        if dangling.is_empty() {
            self.dangling.remove(id);
        } else {
            self.dangling.insert(id.to_owned(), dangling);
        }
    }

    fn unchanged(&mut self, rt: ResourceType, id: &str) {
        if !self.second_pass {
            *self.unchanged.entry(rt.endpoint()).or_default() += 1;
        }
        self.dangling.remove(id);
    }

    fn refuse(
        &mut self,
        rt: ResourceType,
        id: Option<&str>,
        location: Option<&str>,
        e: &ScimError,
    ) {
        let mut entry = json!({
            "resourceType": rt.name(),
            "status": e.status,
            "detail": e.detail,
        });
        if let Some(id) = id {
            entry["id"] = json!(id);
        }
        if let Some(location) = location {
            entry["location"] = json!(location);
        }
        if let Some(t) = e.scim_type {
            entry["scimType"] = json!(t.as_str());
        }
        self.refused.push(entry);
    }

    fn count(map: &BTreeMap<&'static str, u64>, rt: ResourceType) -> u64 {
        map.get(rt.endpoint()).copied().unwrap_or(0)
    }

    fn refused_count(&self, rt: ResourceType) -> usize {
        self.refused
            .iter()
            .filter(|r| r["resourceType"] == rt.name())
            .count()
    }

    /// The JSON report.
    fn document(&self) -> Value {
        let per_type = |rt: ResourceType| {
            json!({
                if self.dry_run { "toImport" } else { "imported" }: Self::count(&self.imported, rt),
                "unchanged": Self::count(&self.unchanged, rt),
                "refused": self.refused_count(rt),
            })
        };
        let dangling: Vec<Value> = self
            .dangling
            .iter()
            .map(|(group, members)| json!({"group": group, "members": members}))
            .collect();
        json!({
            "from": self.from,
            "dryRun": self.dry_run,
            "started": self.started.to_rfc3339(),
            "finished": chrono::Utc::now().to_rfc3339(),
            "Users": per_type(ResourceType::User),
            "Groups": per_type(ResourceType::Group),
            "refused": self.refused,
            "danglingMembers": dangling,
        })
    }

    /// The lines printed at the end.
    fn summary(&self) -> String {
        let verb = if self.dry_run {
            "to import"
        } else {
            "imported"
        };
        let mut out = format!(
            "{}{}:\n",
            if self.dry_run {
                "dry run, nothing written: "
            } else {
                ""
            },
            self.from
        );
        for rt in ResourceType::ALL {
            out += &format!(
                "  {}: {} {verb}, {} unchanged, {} refused\n",
                rt.endpoint(),
                Self::count(&self.imported, rt),
                Self::count(&self.unchanged, rt),
                self.refused_count(rt),
            );
        }
        for r in self.refused.iter().take(20) {
            let at = r["id"].as_str().or(r["location"].as_str()).unwrap_or("?");
            out += &format!(
                "  refused {} {at}: {}\n",
                r["resourceType"].as_str().unwrap_or("?"),
                r["detail"].as_str().unwrap_or("")
            );
        }
        if self.refused.len() > 20 {
            out += &format!("  … and {} more refused\n", self.refused.len() - 20);
        }
        for (group, members) in self.dangling.iter().take(20) {
            out += &format!(
                "  group {group}: members that point nowhere, left out: {}\n",
                members.join(", ")
            );
        }
        out
    }
}
