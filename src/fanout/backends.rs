//! Which projection backends a deployment runs, and how each is connected.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use projections::file::FileProjection;
use projections::file::source::FileSource;
use projections::jumpcloud::{JumpCloudProjection, JumpCloudSettings};
use projections::ldap::source::LdapSource;
use projections::ldap::{Layout, LdapProjection, LdapSettings};
use projections::mongo::source::MongoSource;
use projections::mongo::{MongoProjection, MongoSettings};
use projections::scim::{ScimProjection, ScimSettings};
use projections::source::Source;
use projections::sql::SqlProjection;
use projections::sql::source::SqlSource;
use projections::{IdMap, Projection, ProjectionError};

use crate::config::{ForwardScimError, ProjectionConfig};

/// A configured projection backend, not yet connected.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Flat files under a root directory.
    File(PathBuf),
    /// A SQL database.
    Sql {
        url: String,
        users: String,
        groups: String,
    },
    /// An LDAP directory.
    Ldap(LdapSettings),
    /// A MongoDB database.
    Mongo {
        uri: String,
        settings: MongoSettings,
    },
    /// A JumpCloud organisation.
    JumpCloud(JumpCloudSettings),
    /// An upstream SCIM server.
    Scim(ScimSettings),
}

/// The name of every projection backend, as PROJECTIONS and `scimd replay --projection` take them.
pub const NAMES: &[&str] = &["file", "sql", "ldap", "mongo", "jumpcloud", "scim"];

/// A projection setting that makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// PROJECTIONS names a backend scimd does not have.
    #[error(
        "PROJECTIONS names `{0}`, which is not a projection (known: file, sql, ldap, mongo, jumpcloud, scim, none)"
    )]
    Unknown(String),
    /// A backend was asked for without its settings.
    #[error("the `{0}` projection needs {1}")]
    Missing(&'static str, &'static str),
    /// A backend's setting is unusable.
    #[error("the `{0}` projection: {1}")]
    Invalid(&'static str, String),
}

impl Backend {
    /// The backend's name: its checkpoint key and its `/status` entry.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "file",
            Backend::Sql { .. } => "sql",
            Backend::Ldap(_) => "ldap",
            Backend::Mongo { .. } => "mongo",
            Backend::JumpCloud(_) => "jumpcloud",
            Backend::Scim(_) => "scim",
        }
    }

    /// Connects to the backend. Fails with `Unavailable` while it is unreachable. `ids` is the
    /// backend's durable id map, which the remote backends (whose services assign their own ids)
    /// keep; the others ignore it.
    pub async fn connect(
        &self,
        ids: Arc<dyn IdMap>,
    ) -> Result<Box<dyn Projection>, ProjectionError> {
        Ok(match self {
            Backend::File(root) => Box::new(FileProjection::new(root.clone())),
            Backend::Sql { url, users, groups } => {
                Box::new(SqlProjection::connect(url, users, groups).await?)
            }
            Backend::Ldap(settings) => Box::new(LdapProjection::connect(settings.clone()).await?),
            Backend::Mongo { uri, settings } => {
                Box::new(MongoProjection::connect(uri, settings.clone()).await?)
            }
            Backend::JumpCloud(settings) => {
                Box::new(JumpCloudProjection::connect(settings, ids).await?)
            }
            Backend::Scim(settings) => {
                Box::new(ScimProjection::connect(settings.clone(), ids).await?)
            }
        })
    }
}

impl Backend {
    /// Connects to the backend's read side (`scimd import`, and `replay --fresh` looking for rows
    /// the log cannot rebuild). It writes nothing: no table, OU or directory is created.
    pub async fn source(&self) -> Result<Box<dyn Source>, ProjectionError> {
        Ok(match self {
            Backend::File(root) => Box::new(FileSource::new(root.clone())?),
            Backend::Sql { url, users, groups } => {
                Box::new(SqlSource::connect(url, users, groups).await?)
            }
            Backend::Ldap(settings) => Box::new(LdapSource::connect(settings.clone()).await?),
            Backend::Mongo { uri, settings } => {
                Box::new(MongoSource::connect(uri, settings.clone()).await?)
            }
            // `replay --fresh` deletes in JumpCloud only what the id map names, so the rows scimd
            // did not write are never at risk; importing from JumpCloud is not offered.
            Backend::JumpCloud(_) => {
                return Err(ProjectionError::Config(
                    "the jumpcloud projection has no read side: scimd import cannot read from it"
                        .into(),
                ));
            }
            // Not a source: its `--fresh` deletes only what the id map says scimd created there.
            Backend::Scim(_) => {
                return Err(ProjectionError::Config(
                    "an upstream SCIM server is not read back as a source".into(),
                ));
            }
        })
    }
}

/// The backend called `name`, configured from `config`.
pub fn by_name(
    name: &str,
    config: &ProjectionConfig,
    data_path: &Path,
) -> Result<Backend, SelectError> {
    match name {
        "file" => Ok(Backend::File(
            config
                .files_path
                .clone()
                .unwrap_or_else(|| data_path.to_owned()),
        )),
        "sql" => config
            .database_url
            .clone()
            .map(|url| Backend::Sql {
                url,
                users: config.user_model_name.clone(),
                groups: config.group_model_name.clone(),
            })
            .ok_or(SelectError::Missing("sql", "DATABASE_URL")),
        "ldap" => {
            let hostname = config
                .ldap_hostname
                .as_deref()
                .ok_or(SelectError::Missing("ldap", "LDAP_HOSTNAME"))?;
            let url = LdapSettings::url_of(hostname)
                .map_err(|e| SelectError::Invalid("ldap", e.to_string()))?;
            let layout =
                Layout::parse(&config.ldap_layout).map_err(|e| SelectError::Invalid("ldap", e))?;
            let base = config.ldap_basename.trim().to_owned();
            if base.is_empty() {
                return Err(SelectError::Invalid(
                    "ldap",
                    "LDAP_BASENAME is empty".into(),
                ));
            }
            Ok(Backend::Ldap(LdapSettings {
                url,
                bind_dn: config
                    .ldap_username
                    .clone()
                    .unwrap_or_else(|| format!("cn=admin,{base}")),
                base,
                password: config.ldap_password.clone().unwrap_or_default(),
                starttls: config.ldap_starttls,
                layout,
                users_ou: config.user_model_name.clone(),
                groups_ou: config.group_model_name.clone(),
            }))
        }
        "mongo" => config
            .mongo_db
            .clone()
            .map(|uri| Backend::Mongo {
                uri,
                settings: MongoSettings {
                    database: config.mongo_database.clone(),
                    users: config.user_model_name.clone(),
                    groups: config.group_model_name.clone(),
                },
            })
            .ok_or(SelectError::Missing("mongo", "MONGO_DB")),
        "jumpcloud" => {
            let url = config
                .jumpcloud_url
                .clone()
                .filter(|u| !u.trim().is_empty())
                .ok_or(SelectError::Missing("jumpcloud", "JUMPCLOUD_URL"))?;
            let key = config
                .jumpcloud_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .ok_or(SelectError::Missing(
                    "jumpcloud",
                    "JUMPCLOUD_KEY (the API key JumpCloud issued; scimd never sends its own)",
                ))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(SelectError::Invalid(
                    "jumpcloud",
                    format!("JUMPCLOUD_URL {url:?} is not an http(s):// URL"),
                ));
            }
            Ok(Backend::JumpCloud(JumpCloudSettings {
                url,
                key,
                org_id: config.jumpcloud_org_id.clone(),
            }))
        }
        "scim" => {
            let forward = &config.forward;
            let invalid = |e: ForwardScimError| SelectError::Invalid("scim", e.to_string());
            let (url, key) =
                forward
                    .url_and_key()
                    .map_err(invalid)?
                    .ok_or(SelectError::Missing(
                        "scim",
                        "FORWARD_SCIM_URL and FORWARD_SCIM_KEY",
                    ))?;
            Ok(Backend::Scim(ScimSettings {
                url,
                key,
                headers: forward.header_pairs().map_err(invalid)?,
                ca_file: forward.ca_file.clone(),
                adopt: forward.adopt,
            }))
        }
        other => Err(SelectError::Unknown(other.to_owned())),
    }
}

/// The projections to run: PROJECTIONS if set (`none` for none); otherwise every backend whose
/// settings are present; otherwise `file`, as the earlier server defaulted to flat files.
///
/// A FORWARD_SCIM_URL without its key stops start-up even when `scim` is not selected: whoever set
/// it expects forwarding, and must learn that the key has no default.
pub fn select(config: &ProjectionConfig, data_path: &Path) -> Result<Vec<Backend>, SelectError> {
    config
        .forward
        .url_and_key()
        .map_err(|e| SelectError::Invalid("scim", e.to_string()))?;
    match config.projections.as_deref().map(str::trim) {
        Some("none") => Ok(Vec::new()),
        Some(list) if !list.is_empty() => {
            let mut out: Vec<Backend> = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let backend = by_name(name, config, data_path)?;
                if !out.iter().any(|b| b.name() == backend.name()) {
                    out.push(backend);
                }
            }
            Ok(out)
        }
        _ => Ok(vec![
            by_name("sql", config, data_path).or_else(|_| by_name("file", config, data_path))?,
        ]),
    }
}
