//! Reading the file layout back: every `ROOT/Users/{id}` and `ROOT/Groups/{id}` document (hidden
//! files, such as the writer's `.scimd-….tmp`, and directories are skipped).

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::source::{Held, Source, parse_document, unreadable};
use crate::{ProjectionError, ResourceKind};

/// The documents under a root directory.
#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
}

impl FileSource {
    /// Reads under `root`, which must be a directory.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] when `root` is not a readable directory.
    pub fn new(root: PathBuf) -> Result<Self, ProjectionError> {
        if !root.is_dir() {
            return Err(ProjectionError::Config(format!(
                "file: {} is not a directory",
                root.display()
            )));
        }
        Ok(FileSource { root })
    }
}

#[async_trait]
impl Source for FileSource {
    async fn read(&mut self, kind: ResourceKind) -> Result<Vec<Held>, ProjectionError> {
        let dir = self.root.join(kind.plural());
        tokio::task::spawn_blocking(move || {
            let fail = |e: io::Error| {
                ProjectionError::Unavailable(format!("file: {}: {e}", dir.display()))
            };
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                // A deployment that never had a Group has no Groups directory.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(fail(e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(fail)?;
                let path = entry.path();
                let location = path.display().to_string();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    out.push(unreadable(location, "the file name is not UTF-8"));
                    continue;
                };
                if name.starts_with('.') || entry.file_type().map_err(fail)?.is_dir() {
                    continue;
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => out.push(parse_document(location, name, &text)),
                    Err(e) => out.push(unreadable(location, e.to_string())),
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("file: reading failed: {e}")))?
    }
}
