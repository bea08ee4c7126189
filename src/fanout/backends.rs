//! Which projection backends a deployment runs, and how each is connected.

use std::path::{Path, PathBuf};

use projections::file::FileProjection;
use projections::file::source::FileSource;
use projections::ldap::source::LdapSource;
use projections::ldap::{Layout, LdapProjection, LdapSettings};
use projections::mongo::source::MongoSource;
use projections::mongo::{MongoProjection, MongoSettings};
use projections::source::Source;
use projections::sql::SqlProjection;
use projections::sql::source::SqlSource;
use projections::{Projection, ProjectionError};

use crate::config::ProjectionConfig;

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
}

/// A projection setting that makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// PROJECTIONS names a backend scimd does not have.
    #[error(
        "PROJECTIONS names `{0}`, which is not a projection (known: file, sql, ldap, mongo, none)"
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
        }
    }

    /// Connects to the backend. Fails with `Unavailable` while it is unreachable.
    pub async fn connect(&self) -> Result<Box<dyn Projection>, ProjectionError> {
        Ok(match self {
            Backend::File(root) => Box::new(FileProjection::new(root.clone())),
            Backend::Sql { url, users, groups } => {
                Box::new(SqlProjection::connect(url, users, groups).await?)
            }
            Backend::Ldap(settings) => Box::new(LdapProjection::connect(settings.clone()).await?),
            Backend::Mongo { uri, settings } => {
                Box::new(MongoProjection::connect(uri, settings.clone()).await?)
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
        other => Err(SelectError::Unknown(other.to_owned())),
    }
}

/// The projections to run: PROJECTIONS if set (`none` for none); otherwise every backend whose
/// settings are present; otherwise `file`, as the earlier server defaulted to flat files.
pub fn select(config: &ProjectionConfig, data_path: &Path) -> Result<Vec<Backend>, SelectError> {
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
