//! The `file` projection: one pretty-printed JSON document per resource, laid out as the earlier
//! Python server did: `ROOT/Users/{id}` and `ROOT/Groups/{id}` (no extension).
//!
//! # Guarantees
//! - Every write is atomic: the document goes to a temporary file in the same directory
//!   (`.scimd-….tmp`), which is fsynced and then renamed over the target. A reader sees the old
//!   document or the new one, never a torn one, and a crash leaves at most a stray temporary file
//!   (removed by [`Projection::reset`]).
//! - `apply` returns `Ok` only once the batch is durable: every document fsynced, then every
//!   directory the batch touched fsynced once (renames and deletions included).
//! - Only the last change to each resource in a batch is carried out; the result is the same as
//!   applying them all in order, and applying a batch twice gives the same files.
//! - The runner keeps the checkpoint: [`Projection::stored_position`] is always `None`.
//!
//! # Errors
//! - An id that is not a safe file name (empty, `.`, `..`, or containing `/` or NUL) is
//!   [`ProjectionError::Rejected`] before anything is written; so is a name the file system refuses
//!   for good (too long, invalid on that file system, a directory in the way).
//! - Every other I/O failure (disk full, permission denied, read-only file system, I/O error) is
//!   [`ProjectionError::Unavailable`]: the runner retries once the operator has fixed it.

pub mod source;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::{Change, Projection, ProjectionError, ResourceKind};

/// Counter that makes temporary file names unique within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Materialises Users and Groups as JSON files under a root directory.
///
/// See the [module documentation](self) for the layout and the guarantees.
#[derive(Debug, Clone)]
pub struct FileProjection {
    root: PathBuf,
}

impl FileProjection {
    /// A projection writing under `root` (`FILES_PATH`, else `DATA_PATH`).
    ///
    /// Does no I/O: `Users/` and `Groups/` are created by the first `apply` that needs them. Call
    /// [`FileProjection::create_layout`] at start-up to report an unusable directory early.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the document of resource `id` of `kind` lives, or `None` if `id` is not a safe file name.
    pub fn document_path(&self, kind: ResourceKind, id: &str) -> Option<PathBuf> {
        check_id(id).ok()?;
        Some(self.root.join(kind.plural()).join(id))
    }

    /// Creates `root/Users` and `root/Groups` (and `root` itself) if missing, and checks that a
    /// file can be created in each.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] naming the directory and the OS error when one cannot be
    /// created or written to.
    pub async fn create_layout(&self) -> Result<(), ProjectionError> {
        let root = self.root.clone();
        blocking(move || {
            for kind in [ResourceKind::User, ResourceKind::Group] {
                let dir = root.join(kind.plural());
                let config = |e: io::Error| {
                    ProjectionError::Config(format!("file projection: {}: {e}", dir.display()))
                };
                create_dir_durably(&dir).map_err(config)?;
                let probe = temp_path(&dir);
                File::create(&probe).map_err(config)?;
                fs::remove_file(&probe).map_err(config)?;
            }
            Ok(())
        })
        .await
    }
}

/// Refuses ids that would escape their directory or are not file names at all.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        Err(format!("id {id:?} is not usable as a file name"))
    } else {
        Ok(())
    }
}

/// A fresh temporary file name in `dir`, hidden so that directory listings of readers skip it.
fn temp_path(dir: &Path) -> PathBuf {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".scimd-{}-{seq}.tmp", std::process::id()))
}

/// One file operation of a batch, with the index of the change it carries out.
enum Op {
    Write {
        index: usize,
        dir: PathBuf,
        target: PathBuf,
        bytes: Vec<u8>,
    },
    Remove {
        index: usize,
        dir: PathBuf,
        target: PathBuf,
    },
}

impl Op {
    fn dir(&self) -> &Path {
        match self {
            Op::Write { dir, .. } | Op::Remove { dir, .. } => dir,
        }
    }
}

/// Maps an I/O error of the change at `index` (if one is to blame) on `path`.
fn io_error(index: Option<usize>, path: &Path, e: io::Error) -> ProjectionError {
    let permanent = matches!(
        e.kind(),
        io::ErrorKind::InvalidFilename | io::ErrorKind::IsADirectory | io::ErrorKind::FileTooLarge
    );
    match index {
        Some(index) if permanent => ProjectionError::Rejected {
            index,
            reason: format!("{}: {e}", path.display()),
        },
        _ => ProjectionError::Unavailable(format!("file projection: {}: {e}", path.display())),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, ProjectionError>
where
    F: FnOnce() -> Result<T, ProjectionError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProjectionError::Unavailable(format!("file projection task failed: {e}")))?
}

/// fsyncs a directory, so that the renames and deletions in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each one created so that the
/// new directories survive a crash along with the files written in them.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    fs::create_dir_all(dir)?;
    for created in missing {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to a new temporary file in `dir` and fsyncs it; returns its path.
fn write_temp(dir: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = temp_path(dir);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Threads that write and fsync temporary files at once: an fsync waits for the disk, not the CPU,
/// and the file system commits concurrent fsyncs together.
const WRITERS: usize = 8;

/// The temporary file of each write of `ops` (`None` for a removal), in order; several threads
/// for large batches.
fn write_temps(ops: &[Op]) -> Vec<io::Result<Option<PathBuf>>> {
    let write = |op: &Op| match op {
        Op::Write { dir, bytes, .. } => write_temp(dir, bytes).map(Some),
        Op::Remove { .. } => Ok(None),
    };
    let threads = WRITERS.min(ops.len().div_ceil(8));
    if threads <= 1 {
        return ops.iter().map(write).collect();
    }
    let per_thread = ops.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = ops
            .chunks(per_thread)
            .map(|part| {
                (
                    part.len(),
                    scope.spawn(move || part.iter().map(write).collect()),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, handle)| {
                handle.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(io::Error::other("file projection writer thread panicked")))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    })
}

/// Carries out `ops` durably. See the module documentation for the order of operations.
fn execute(ops: Vec<Op>) -> Result<(), ProjectionError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for op in &ops {
        if !dirs.iter().any(|d| d == op.dir()) {
            dirs.push(op.dir().to_path_buf());
        }
    }
    for dir in &dirs {
        create_dir_durably(dir).map_err(|e| io_error(None, dir, e))?;
    }

    // 1. Every new document into a temporary file, fsynced.
    let written = write_temps(&ops);
    let mut temps: Vec<Option<PathBuf>> = Vec::with_capacity(ops.len());
    let mut failure = None;
    for (op, result) in ops.iter().zip(written) {
        match result {
            Ok(temp) => temps.push(temp),
            Err(e) => {
                temps.push(None);
                if failure.is_none()
                    && let Op::Write { index, target, .. } = op
                {
                    failure = Some(io_error(Some(*index), target, e));
                }
            }
        }
    }
    let cleanup = |temps: &[Option<PathBuf>]| {
        for temp in temps.iter().flatten() {
            let _ = fs::remove_file(temp);
        }
    };
    if let Some(e) = failure {
        cleanup(&temps);
        return Err(e);
    }

    // 2. Renames and deletions, in batch order.
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Write { index, target, .. } => match temps[i].take() {
                Some(temp) => fs::rename(&temp, target).map_err(|e| {
                    let _ = fs::remove_file(&temp);
                    io_error(Some(*index), target, e)
                }),
                None => Ok(()),
            },
            Op::Remove { index, target, .. } => match fs::remove_file(target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(Some(*index), target, e)),
            },
        };
        if let Err(e) = result {
            cleanup(&temps);
            // Renames already done are harmless: the runner re-applies or parks this batch.
            for dir in &dirs {
                let _ = sync_dir(dir);
            }
            return Err(e);
        }
    }

    // 3. One fsync per directory makes the renames and deletions durable.
    for dir in &dirs {
        sync_dir(dir).map_err(|e| io_error(None, dir, e))?;
    }
    Ok(())
}

/// Removes every file (not subdirectories) in `dir`; a missing `dir` is empty.
fn empty_dir(dir: &Path) -> Result<(), ProjectionError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(None, dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(None, dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_error(None, &path, e))?;
        if file_type.is_dir() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(None, &path, e)),
        }
    }
    sync_dir(dir).map_err(|e| io_error(None, dir, e))
}

#[async_trait]
impl Projection for FileProjection {
    fn name(&self) -> &str {
        "file"
    }

    async fn apply(&mut self, changes: &[Change], _position: u64) -> Result<(), ProjectionError> {
        for (index, change) in changes.iter().enumerate() {
            check_id(change.id()).map_err(|reason| ProjectionError::Rejected { index, reason })?;
        }

        // Only the last change to each resource matters; keep batch order among the survivors.
        let mut last: HashMap<(ResourceKind, &str), usize> = HashMap::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            last.insert((change.kind(), change.id()), index);
        }
        let mut survivors: Vec<usize> = last.into_values().collect();
        survivors.sort_unstable();

        let mut ops = Vec::with_capacity(survivors.len());
        for index in survivors {
            match &changes[index] {
                Change::Upsert {
                    kind, id, document, ..
                } => {
                    let dir = self.root.join(kind.plural());
                    let bytes = serde_json::to_vec_pretty(document).map_err(|e| {
                        ProjectionError::Rejected {
                            index,
                            reason: format!("cannot serialise the document: {e}"),
                        }
                    })?;
                    ops.push(Op::Write {
                        index,
                        target: dir.join(id),
                        dir,
                        bytes,
                    });
                }
                Change::Delete { kind, id } => {
                    let dir = self.root.join(kind.plural());
                    ops.push(Op::Remove {
                        index,
                        target: dir.join(id),
                        dir,
                    });
                }
                Change::Members { .. } => {
                    return Err(ProjectionError::Rejected {
                        index,
                        reason: "the file projection takes whole documents, not member deltas"
                            .into(),
                    });
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        blocking(move || execute(ops)).await
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        Ok(None)
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        let root = self.root.clone();
        blocking(move || {
            for kind in [ResourceKind::User, ResourceKind::Group] {
                empty_dir(&root.join(kind.plural()))?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::check_id;

    #[test]
    fn ids_that_escape_their_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "2819c223-7f76-453a-919d-413861904646",
            "...",
            ".hidden",
            "a b",
            "ünï",
        ] {
            assert!(check_id(good).is_ok(), "{good:?} refused");
        }
    }
}
