//! Every setting of `scimd serve`, read once into a typed [`ServeConfig`]. Each is an environment
//! variable (the names the earlier Python server used) and a `--flag`; the README lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use scim::schema::{Registry, SchemaFiles, SchemaMode};

pub use files_mode::FilesMode;
pub use schema_path::SchemaPathError;

mod files_mode;
mod schema_path;

/// Settings every subcommand shares.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Directory of the store (the event log and read model) and of generated files.
    #[arg(long, env = "DATA_PATH", default_value = "./data", global = true)]
    pub data_path: PathBuf,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "LOGLEVEL", default_value = "info", global = true)]
    pub loglevel: String,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Directory of extra SCIM schemas: `extensions/User/*.json`, `extensions/Group/*.json`, and
    /// optionally `core/User.json`, `core/Group.json` to replace a core schema (RFC 7643 §7 format).
    #[arg(long, env = "SCHEMA_PATH", global = true)]
    pub schema_path: Option<PathBuf>,
    /// `strict`: attributes and extension URNs the schemas do not declare are rejected (400);
    /// `lenient`: they are stored verbatim (for migrations from schemaless stores).
    #[arg(long, env = "SCHEMA_MODE", default_value = "strict", global = true)]
    pub schema_mode: SchemaMode,
    /// User attributes set from other attributes on every write: a JSON object
    /// `{"target": "source"}` of attribute paths, e.g.
    /// `{"userName": "urn:mace:surf.nl:sram:scim:extension:User:eduPersonUniqueId"}`.
    #[arg(long, env = "USER_MAPPING", global = true)]
    pub user_mapping: Option<String>,
    /// Group attributes set from other attributes on every write, like USER_MAPPING.
    #[arg(long, env = "GROUP_MAPPING", global = true)]
    pub group_mapping: Option<String>,
    /// `true`: `externalId` is unique per resource type (409 `uniqueness`). RFC 7643 §3.1 scopes it
    /// to the provisioning client, so by default several resources may share one.
    #[arg(
        long,
        env = "EXTERNAL_ID_UNIQUE",
        default_value_t = false,
        global = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub external_id_unique: bool,
    /// Mode of the files scimd creates (store, projection documents); directories get search
    /// where it lets read (0600 → 0700, 0640 → 0750).
    #[arg(long, env = "FILES_MODE", default_value = "0600", global = true)]
    pub files_mode: FilesMode,
}

impl CommonConfig {
    /// The schema registry: the built-in schemas plus SCHEMA_PATH, with the mappings.
    pub fn registry(&self) -> Result<Arc<Registry>, SchemaPathError> {
        let files = match &self.schema_path {
            Some(root) => schema_path::read(root)?,
            None => SchemaFiles::default(),
        };
        Ok(Registry::load(&files, self.schema_mode)?
            .with_external_id_unique(self.external_id_unique)
            .with_mappings(self.user_mapping.as_deref(), self.group_mapping.as_deref())
            .map(Arc::new)?)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of `scimd serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// API keys, comma-separated, each optionally named (`entra=KEY`). Unset: a key is generated
    /// and kept in DATA_PATH/api-key.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Path prefix of every SCIM route (e.g. `/scim/v2`); `/` means none.
    #[arg(long, env = "BASE_PATH", default_value = "")]
    pub base_path: String,
    /// Absolute URL prefix for `meta.location` and `$ref` (e.g. `https://idm.example.org`);
    /// unset: derived from each request's Host / X-Forwarded-* headers.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest page a list request returns (`count` is capped to it).
    #[arg(long, env = "PAGE_SIZE", default_value_t = 100)]
    pub page_size: usize,
    /// Memory (MiB) the store may use to cache its pages; a ceiling, not a reservation. Reads stay
    /// fastest while the store file (`DATA_PATH/scimd.redb`) fits: about 2 GB per million users.
    #[arg(long, env = "STORE_CACHE_MB", default_value_t = 1024)]
    pub store_cache_mb: usize,
    /// Seconds one batch may keep the store's writer (an fsync, a commit) before it counts as
    /// stalled: `/ready` and `/health` fail and an ERROR is logged until it moves again.
    #[arg(long, env = "WRITER_STALL_TIMEOUT", default_value_t = 30)]
    pub writer_stall_timeout: u64,
    /// Longest `filter` accepted, in characters (longer: 400 `invalidFilter`).
    #[arg(long, env = "FILTER_MAX_LENGTH", default_value_t = 4096)]
    pub filter_max_length: usize,
    /// Deepest nesting of parentheses, `not` and `[…]` in a `filter`.
    #[arg(long, env = "FILTER_MAX_DEPTH", default_value_t = 16)]
    pub filter_max_depth: usize,
    /// Most comparisons in a `filter`.
    #[arg(long, env = "FILTER_MAX_TERMS", default_value_t = 64)]
    pub filter_max_terms: usize,
    /// Seconds a paging cursor (RFC 9865) stays valid after it was issued.
    #[arg(long, env = "CURSOR_TIMEOUT", default_value_t = 3600)]
    pub cursor_timeout: u64,
    /// Serve `GET /metrics` without an API key (`true` for a Prometheus that cannot send one;
    /// keep the port off the internet then).
    #[arg(
        long,
        env = "METRICS_PUBLIC",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub metrics_public: bool,
    /// PEM certificate chain to serve HTTPS with (with TLS_KEY); read again on SIGHUP and when the
    /// file changes.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of TLS_CERT.
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request's head (request line and headers) once it has
    /// started it, and its first request after connecting; then the connection is closed.
    #[arg(long, env = "HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a request's body after its head (408 beyond).
    #[arg(long, env = "BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Seconds from a request's head to its answer (503 beyond: a write may or may not have been
    /// applied).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Milliseconds of the store's writer one PATCH may take (413 beyond, nothing applied): every
    /// other client's writes wait while the writer works on it.
    #[arg(long, env = "PATCH_TIME_LIMIT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub patch_time_limit_ms: u64,
    /// How many store reads (GET, lists, searches, `/status`) run at once, on threads of their own
    /// beside the async runtime; more wait their turn.
    #[arg(long, env = "READ_THREADS", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..1024))]
    pub read_threads: u64,
    /// Honour `Prefer: respond-async` (RFC 9967 §3): `false` ignores it, as RFC 7240 allows, and
    /// every write is answered synchronously.
    #[arg(
        long,
        env = "ASYNC_REQUESTS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub async_requests: bool,
    /// The most asynchronous requests accepted and not yet run (503 beyond).
    #[arg(long, env = "ASYNC_MAX_PENDING", default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_max_pending: u64,
    /// Hours an asynchronous request's outcome is kept (fetchable at its Location) once decided.
    #[arg(long, env = "ASYNC_RETENTION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_retention_hours: u64,
    #[command(flatten)]
    pub amqp: AmqpConfig,
    #[command(flatten)]
    pub security_events: SecurityEventConfig,
    #[command(flatten)]
    pub projections: ProjectionConfig,
}

/// Security event tokens (RFC 8417, RFC 9967): what they say, how they are signed and where they
/// are pushed. SETs are on once one of SET_SIGNING_SECRET, SET_SIGNING_KEY or SET_SIGNING=none is set.
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityEventConfig {
    /// `iss` of every SET. Unset: PUBLIC_URL (one of them is required once SETs are on).
    #[arg(long = "set-issuer", env = "SET_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` of every SET: one value, or several comma-separated. Unset: no `aud`.
    #[arg(long = "set-audience", env = "SET_AUDIENCE")]
    pub audience: Option<String>,
    /// HS256 secret (at least 32 bytes) to sign SETs with (never printed).
    #[arg(
        long = "set-signing-secret",
        env = "SET_SIGNING_SECRET",
        hide_env_values = true
    )]
    pub signing_secret: Option<String>,
    /// PEM private key (PKCS#8 or PKCS#1 RSA, PKCS#8 EC P-256) to sign SETs with: RS256 for an
    /// RSA key, ES256 for an EC key; its public half is served at `/.well-known/jwks.json`.
    #[arg(long = "set-signing-key", env = "SET_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// `none`: SETs are unsigned (`alg: none`); only for receivers that reach scimd over TLS and
    /// trust it by other means (RFC 8417 §2.4). Unset: signed with the secret or key above.
    #[arg(long = "set-signing", env = "SET_SIGNING")]
    pub signing: Option<String>,
    /// What a create/put/patch SET carries: `notice` (the changed attribute paths) or `full`
    /// (the resource as a GET returns it after the change).
    #[arg(long, env = "EVENT_MODE", default_value = "notice")]
    pub event_mode: EventMode,
    /// `true`: each Group is also a feed whose subjects are its members (`feed:add`/`feed:remove`
    /// when one joins or leaves), beside the default feed of everything.
    #[arg(
        long = "set-group-as-feed",
        env = "SET_GROUP_AS_FEED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub group_as_feed: bool,
    /// RFC 8935 push: the receiver's URL; each SET of the default feed is POSTed to it.
    #[arg(long = "set-push-url", env = "SET_PUSH_URL")]
    pub push_url: Option<String>,
    /// Bearer token sent to SET_PUSH_URL (never printed or logged).
    #[arg(
        long = "set-push-token",
        env = "SET_PUSH_TOKEN",
        hide_env_values = true
    )]
    pub push_token: Option<String>,
    /// `true`: allow an `http://` SET_PUSH_URL (SETs carry personal data: tests and loopback only).
    #[arg(
        long = "set-push-allow-http",
        env = "SET_PUSH_ALLOW_HTTP",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub push_allow_http: bool,
}

/// What a create, put or patch SET carries (RFC 9967 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventMode {
    /// `…:notice` with `attributes`: the paths that changed.
    Notice,
    /// `…:full` with `data`: the resource after the change, as a GET returns it.
    Full,
}

/// Which projections run and where they write.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectionConfig {
    /// Projections to run, comma-separated (`file`, `sql`, `ldap`, `mongo`, `jumpcloud`), or `none`. Unset: `sql`
    /// if DATABASE_URL is set, else `file`.
    #[arg(long, env = "PROJECTIONS")]
    pub projections: Option<String>,
    /// Root of the file projection (`Users/{id}`, `Groups/{id}`). Unset: DATA_PATH.
    #[arg(long, env = "FILES_PATH")]
    pub files_path: Option<PathBuf>,
    /// SQL projection database: postgres://, mysql://, mariadb://, sqlite:// (SQLAlchemy-style
    /// `postgresql+psycopg2://`, `mysql+pymysql://` accepted).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// SQL table, LDAP OU and MongoDB collection of Users.
    #[arg(long, env = "USER_MODEL_NAME", default_value = "Users")]
    pub user_model_name: String,
    /// SQL table, LDAP OU and MongoDB collection of Groups.
    #[arg(long, env = "GROUP_MODEL_NAME", default_value = "Groups")]
    pub group_model_name: String,
    /// LDAP projection server: `ldap://host:389`, `ldaps://host:636`, or a host name.
    #[arg(long, env = "LDAP_HOSTNAME")]
    pub ldap_hostname: Option<String>,
    /// LDAP base DN; `ou=USER_MODEL_NAME` and `ou=GROUP_MODEL_NAME` are created under it.
    #[arg(long, env = "LDAP_BASENAME", default_value = "dc=example,dc=org")]
    pub ldap_basename: String,
    /// DN the LDAP projection binds as. Unset: `cn=admin,` + LDAP_BASENAME.
    #[arg(long, env = "LDAP_USERNAME")]
    pub ldap_username: Option<String>,
    /// Password of LDAP_USERNAME (never printed).
    #[arg(long, env = "LDAP_PASSWORD", hide_env_values = true)]
    pub ldap_password: Option<String>,
    /// Upgrade `ldap://` connections with StartTLS (`true`/`false`).
    #[arg(
        long,
        env = "LDAP_STARTTLS",
        default_value = "false",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ldap_starttls: bool,
    /// LDAP entry layout: `device` (the earlier server's: device + extensibleObject, JSON in
    /// `info`) or `inetorgperson` (inetOrgPerson Users, groupOfNames Groups).
    #[arg(long, env = "LDAP_LAYOUT", default_value = "device")]
    pub ldap_layout: String,
    /// MongoDB projection connection string (`mongodb://user:pass@host:27017/`).
    #[arg(long, env = "MONGO_DB", hide_env_values = true)]
    pub mongo_db: Option<String>,
    /// MongoDB database of the projection.
    #[arg(long, env = "MONGO_DATABASE", default_value = "scim")]
    pub mongo_database: String,
    /// JumpCloud projection: the API's root (`https://console.jumpcloud.com`); scimd appends
    /// `/api/…` and `/api/v2/…`.
    #[arg(long, env = "JUMPCLOUD_URL")]
    pub jumpcloud_url: Option<String>,
    /// JumpCloud API key, sent as `x-api-key` (never printed or logged).
    #[arg(long, env = "JUMPCLOUD_KEY", hide_env_values = true)]
    pub jumpcloud_key: Option<String>,
    /// JumpCloud organisation id, sent as `x-org-id` (needed by administrators of several
    /// organisations).
    #[arg(long, env = "JUMPCLOUD_ORG_ID")]
    pub jumpcloud_org_id: Option<String>,
    #[command(flatten)]
    pub forward: ForwardScimConfig,
}

/// The upstream SCIM projection (`scim`). Each setting is also read under the name the earlier
/// server used (`SCIM_FORWARD_URL`, `SCIM_FORWARD_KEY`).
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardScimConfig {
    /// Base URL of the upstream SCIM server's endpoints (`https://host/scim/v2`).
    #[arg(
        long = "forward-scim-url",
        id = "forward_scim_url",
        env = "FORWARD_SCIM_URL"
    )]
    pub url: Option<String>,
    /// FORWARD_SCIM_URL under the earlier server's name.
    #[arg(
        long = "scim-forward-url",
        id = "scim_forward_url",
        env = "SCIM_FORWARD_URL",
        hide = true
    )]
    pub url_earlier_name: Option<String>,
    /// Bearer token for the upstream; required with FORWARD_SCIM_URL (never scimd's own key).
    #[arg(
        long = "forward-scim-key",
        id = "forward_scim_key",
        env = "FORWARD_SCIM_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
    /// FORWARD_SCIM_KEY under the earlier server's name.
    #[arg(
        long = "scim-forward-key",
        id = "scim_forward_key",
        env = "SCIM_FORWARD_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub key_earlier_name: Option<String>,
    /// Extra headers for every upstream request: a JSON object `{"Name": "value"}`.
    #[arg(
        long = "forward-scim-headers",
        id = "forward_scim_headers",
        env = "FORWARD_SCIM_HEADERS",
        hide_env_values = true
    )]
    pub headers: Option<String>,
    /// PEM file of CA certificates to trust for the upstream, besides the system's.
    #[arg(
        long = "forward-scim-ca-file",
        id = "forward_scim_ca_file",
        env = "FORWARD_SCIM_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// On a 409 to a create, adopt the single upstream resource with the same userName /
    /// displayName (`true`), or park the change (`false`).
    #[arg(
        long = "forward-scim-adopt",
        id = "forward_scim_adopt",
        env = "FORWARD_SCIM_ADOPT",
        default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub adopt: bool,
}

/// Why the upstream SCIM settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ForwardScimError {
    /// A setting and its earlier name disagree.
    #[error("{0} and {1} are both set, to different values: set one")]
    Conflict(&'static str, &'static str),
    /// A URL without a key.
    #[error(
        "FORWARD_SCIM_URL (or SCIM_FORWARD_URL) is set but FORWARD_SCIM_KEY (or SCIM_FORWARD_KEY) is not: \
         the upstream's bearer token has no default (scimd never sends its own API key elsewhere)"
    )]
    MissingKey,
    /// FORWARD_SCIM_HEADERS is not a JSON object of strings.
    #[error(
        "FORWARD_SCIM_HEADERS must be a JSON object of strings, like {{\"X-Tenant\": \"a\"}}: {0}"
    )]
    Headers(String),
}

impl ForwardScimConfig {
    /// The upstream's URL and key, if a URL is set. A URL without a key is an error.
    pub fn url_and_key(&self) -> Result<Option<(String, String)>, ForwardScimError> {
        let url = either(
            &self.url,
            &self.url_earlier_name,
            ("FORWARD_SCIM_URL", "SCIM_FORWARD_URL"),
        )?;
        let key = either(
            &self.key,
            &self.key_earlier_name,
            ("FORWARD_SCIM_KEY", "SCIM_FORWARD_KEY"),
        )?;
        match (url, key) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(ForwardScimError::MissingKey),
            (Some(url), Some(key)) => Ok(Some((url, key))),
        }
    }

    /// FORWARD_SCIM_HEADERS as (name, value) pairs.
    pub fn header_pairs(&self) -> Result<Vec<(String, String)>, ForwardScimError> {
        let Some(text) = self.headers.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(Vec::new());
        };
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| ForwardScimError::Headers(e.to_string()))?;
        map.into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(v) => Ok((name, v)),
                _ => Err(ForwardScimError::Headers(format!(
                    "the value of `{name}` is not a string"
                ))),
            })
            .collect()
    }
}

/// The value of a setting read under two names; both set must agree. Empty counts as unset.
fn either(
    new: &Option<String>,
    earlier: &Option<String>,
    names: (&'static str, &'static str),
) -> Result<Option<String>, ForwardScimError> {
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match (clean(new), clean(earlier)) {
        (Some(a), Some(b)) if a != b => Err(ForwardScimError::Conflict(names.0, names.1)),
        (a, b) => Ok(a.or(b)),
    }
}

/// The AMQP fan-out.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpConfig {
    /// Broker URL (`amqp://user:pass@host:5672/%2f`); set it to publish every change.
    #[arg(long = "amqp", env = "AMQP", hide_env_values = true)]
    pub url: Option<String>,
    /// Durable queue the messages go to (through the default exchange, or bound to AMQP_EXCHANGE).
    #[arg(long, env = "QUEUE", default_value = "SCIM")]
    pub queue: String,
    /// Publish to this topic exchange instead, routing key `<ResourceType>.<Operation>`.
    #[arg(long = "amqp-exchange", env = "AMQP_EXCHANGE")]
    pub exchange: Option<String>,
    /// Group messages: `full` member list, or only the `changes` (for very large groups).
    #[arg(
        long = "amqp-group-members",
        env = "AMQP_GROUP_MEMBERS",
        default_value = "full"
    )]
    pub group_members: GroupMembers,
}

/// How group messages describe membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupMembers {
    /// The resource's full `members` list.
    Full,
    /// No `members` in the resource; a top-level `members: {added, removed}`.
    Changes,
}

impl ServeConfig {
    /// STORE_CACHE_MB in bytes.
    pub fn store_cache_bytes(&self) -> usize {
        self.store_cache_mb.saturating_mul(1024 * 1024)
    }

    /// BASE_PATH normalised: empty, or `/segment…` without a trailing slash.
    pub fn base_path(&self) -> String {
        let trimmed = self.base_path.trim().trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }

    /// TLS_CERT and TLS_KEY, when both are set; one without the other is an error.
    pub fn tls_files(&self) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("TLS_CERT and TLS_KEY go together: set both or neither"),
        }
    }

    /// PUBLIC_URL without a trailing slash.
    pub fn public_url(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
    }
}
