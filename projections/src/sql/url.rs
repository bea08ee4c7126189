//! DATABASE_URL: which driver a URL names, and in what form that driver connects to it. Besides
//! sqlx's own schemes this accepts the SQLAlchemy spellings (`postgresql+psycopg2://` …) earlier
//! deployments used.

use std::path::PathBuf;

use crate::ProjectionError;

/// Where a database URL points, in the form the dialect module connects with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DatabaseUrl {
    /// A URL sqlx's PostgreSQL driver parses.
    Postgres(String),
    /// A URL sqlx's MySQL driver parses.
    MySql(String),
    /// A SQLite database.
    Sqlite(SqliteDatabase),
}

/// A SQLite database, as named by the URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SqliteDatabase {
    /// A `sqlite:` URL in sqlx's syntax.
    Url(String),
    /// A file named by a SQLAlchemy URL.
    Path(PathBuf),
    /// `sqlite+pysqlite://` (SQLAlchemy's in-memory database).
    Memory,
}

/// Maps the accepted URL spellings onto the driver to use (see
/// [`SqlProjection::connect`](super::SqlProjection::connect)). Never echoes the URL (it may hold a
/// password) in errors.
pub(super) fn parse(url: &str) -> Result<DatabaseUrl, ProjectionError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or_else(|| {
        ProjectionError::Config("sql projection: DATABASE_URL has no scheme".into())
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let (base, driver) = match scheme.split_once('+') {
        Some((base, driver)) => (base, Some(driver)),
        None => (scheme.as_str(), None),
    };
    match base {
        "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(format!("postgres:{rest}"))),
        "mysql" | "mariadb" => Ok(DatabaseUrl::MySql(format!("mysql:{rest}"))),
        "sqlite" if driver.is_some() => {
            // SQLAlchemy: sqlite:// is in-memory, sqlite:///rel.db relative, sqlite:////abs.db absolute.
            let path = rest.strip_prefix("//").ok_or_else(|| {
                ProjectionError::Config(format!(
                    "sql projection: a {scheme} URL must start with {scheme}://"
                ))
            })?;
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            if path.is_empty() || path == "/:memory:" {
                return Ok(DatabaseUrl::Sqlite(SqliteDatabase::Memory));
            }
            let path = path.strip_prefix('/').ok_or_else(|| {
                ProjectionError::Config(format!(
                    "sql projection: a {scheme} URL names a file as {scheme}:///relative or {scheme}:////absolute"
                ))
            })?;
            Ok(DatabaseUrl::Sqlite(SqliteDatabase::Path(PathBuf::from(
                path,
            ))))
        }
        "sqlite" => Ok(DatabaseUrl::Sqlite(SqliteDatabase::Url(format!(
            "sqlite:{rest}"
        )))),
        _ => Err(ProjectionError::Config(format!(
            "sql projection: unsupported DATABASE_URL scheme {scheme:?} \
             (postgres, postgresql, mysql, mariadb, sqlite, optionally with +driver)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_map_onto_their_driver() {
        assert_eq!(
            parse("postgres://u:p@h:5432/db").ok(),
            Some(DatabaseUrl::Postgres("postgres://u:p@h:5432/db".into()))
        );
        assert_eq!(
            parse("postgresql://h/db?sslmode=disable").ok(),
            Some(DatabaseUrl::Postgres(
                "postgres://h/db?sslmode=disable".into()
            ))
        );
        assert_eq!(
            parse("mariadb://u:p@h/db").ok(),
            Some(DatabaseUrl::MySql("mysql://u:p@h/db".into()))
        );
        assert_eq!(
            parse("sqlite:///tmp/x.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteDatabase::Url(
                "sqlite:///tmp/x.db".into()
            )))
        );
        assert_eq!(
            parse("sqlite://relative.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteDatabase::Url(
                "sqlite://relative.db".into()
            )))
        );
    }

    #[test]
    fn sqlalchemy_urls_lose_their_driver() {
        for (url, expected) in [
            ("postgresql+psycopg2://u:p@h/db", "postgres://u:p@h/db"),
            ("postgresql+asyncpg://u:p@h/db", "postgres://u:p@h/db"),
            ("POSTGRESQL+PSYCOPG2://u:p@h/db", "postgres://u:p@h/db"),
        ] {
            assert_eq!(
                parse(url).ok(),
                Some(DatabaseUrl::Postgres(expected.into()))
            );
        }
        for (url, expected) in [
            (
                "mysql+pymysql://u:p@h/db?charset=utf8mb4",
                "mysql://u:p@h/db?charset=utf8mb4",
            ),
            ("mysql+mysqldb://u:p@h:3306/db", "mysql://u:p@h:3306/db"),
        ] {
            assert_eq!(parse(url).ok(), Some(DatabaseUrl::MySql(expected.into())));
        }
    }

    #[test]
    fn sqlalchemy_sqlite_urls_keep_sqlalchemy_paths() {
        assert_eq!(
            parse("sqlite+pysqlite:///scim.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteDatabase::Path("scim.db".into())))
        );
        assert_eq!(
            parse("sqlite+pysqlite:////var/lib/scim.db?timeout=5").ok(),
            Some(DatabaseUrl::Sqlite(SqliteDatabase::Path(
                "/var/lib/scim.db".into()
            )))
        );
        assert_eq!(
            parse("sqlite+pysqlite://").ok(),
            Some(DatabaseUrl::Sqlite(SqliteDatabase::Memory))
        );
    }

    #[test]
    fn other_schemes_are_a_configuration_error() {
        for url in ["mongodb://h/db", "nonsense", "mssql+pyodbc://h/db", ""] {
            assert!(
                matches!(parse(url), Err(ProjectionError::Config(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_password() {
        let Err(ProjectionError::Config(message)) = parse("oracle://u:secret@h/db") else {
            panic!("accepted");
        };
        assert!(!message.contains("secret"), "{message}");
    }
}
