//! Reading `SCHEMA_PATH`: the directory walk the pure domain crate leaves to its caller.
//!
//! Layout: `core/User.json`, `core/Group.json` (optional) and `extensions/User/*.json`,
//! `extensions/Group/*.json`. A missing or unreadable directory, or an entry where none belongs (a
//! misspelt `extensions/Users/`), stops start-up naming the path: a schema never vanishes silently.

use std::path::{Path, PathBuf};

use scim::ResourceType;
use scim::schema::{SchemaError, SchemaFile, SchemaFiles};

/// Why the schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaPathError {
    /// A file or directory of SCHEMA_PATH could not be read.
    #[error("SCHEMA_PATH {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// An entry of SCHEMA_PATH that the layout has no place for.
    #[error("schema {path}: unexpected entry; {dir} may hold only {allowed}")]
    Unexpected {
        /// The entry.
        path: PathBuf,
        /// The directory it is in.
        dir: PathBuf,
        /// What that directory may hold.
        allowed: String,
    },
    /// A schema is not valid, or a mapping names what the schemas do not have.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Reads every schema file under `root`, checking the layout first.
pub fn read(root: &Path) -> Result<SchemaFiles, SchemaPathError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SchemaPathError::Io { path, source }
    };
    let meta = std::fs::metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(SchemaPathError::Io {
            path: root.to_owned(),
            source: std::io::Error::other("not a directory"),
        });
    }
    check_layout(root)?;
    let mut files = SchemaFiles::default();
    for rt in ResourceType::ALL {
        let core = root.join("core").join(format!("{}.json", rt.name()));
        if core.exists() {
            files.core.push((rt, read_file(&core)?));
        }
        let dir = root.join("extensions").join(rt.name());
        if !dir.exists() {
            continue;
        }
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            files.extensions.push((rt, read_file(&path)?));
        }
    }
    Ok(files)
}

/// Refuses entries under `core/` and `extensions/` that would otherwise be skipped silently.
fn check_layout(root: &Path) -> Result<(), SchemaPathError> {
    let allowed: [(&str, [&str; 2]); 2] = [
        ("core", ["User.json", "Group.json"]),
        ("extensions", ["User", "Group"]),
    ];
    for (dir, names) in allowed {
        let dir = root.join(dir);
        if !dir.exists() {
            continue;
        }
        let io = |source| SchemaPathError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str());
            if !name.is_some_and(|n| names.contains(&n)) {
                return Err(SchemaPathError::Unexpected {
                    path,
                    dir,
                    allowed: names.join(", "),
                });
            }
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<SchemaFile, SchemaPathError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaPathError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(SchemaFile {
        name: path.display().to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use scim::schema::{Registry, SchemaMode};

    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn load(root: &Path) -> Result<Registry, SchemaPathError> {
        Ok(Registry::load(&read(root)?, SchemaMode::Strict)?)
    }

    #[test]
    fn extensions_are_read_in_file_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "extensions/User/b.json", r#"{"id": "urn:b"}"#);
        write(dir.path(), "extensions/User/a.json", r#"{"id": "urn:a"}"#);
        write(dir.path(), "extensions/User/notes.txt", "ignored");
        write(dir.path(), "core/Group.json", r#"{"id": "urn:g"}"#);
        let files = read(dir.path()).unwrap();
        let names: Vec<&str> = files.extensions.iter().map(|(_, f)| &*f.name).collect();
        assert!(
            names[0].ends_with("a.json") && names[1].ends_with("b.json"),
            "{names:?}"
        );
        assert_eq!(names.len(), 2);
        assert_eq!(files.core.len(), 1);
        assert_eq!(files.core[0].0, ResourceType::Group);
    }

    #[test]
    fn a_missing_schema_path_names_the_path() {
        let err = load(Path::new("/nonexistent/schemas")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/schemas"), "{err}");
    }

    #[test]
    fn a_broken_file_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "extensions/Group/bad.json", "{\"id\": ");
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }

    #[test]
    fn a_misspelled_directory_is_an_error_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "extensions/Users/acme.json",
            r#"{"id": "urn:acme:User", "attributes": []}"#,
        );
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("Users"), "{err}");
    }
}
