//! How the operator commands find the server that holds a store: `scimd serve` publishes, inside
//! its DATA_PATH, the URL it answers on and the id of its store (`server.json`, no secrets), and
//! `scimd replay` / `scimd projection retry` read it there instead of trusting LISTEN, then check
//! that the server they reached reports the same store id before they ask it to act. Two servers
//! on one machine can therefore never be mixed up: the command acts on the server of the
//! DATA_PATH it was given, or on none.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file a running server publishes under DATA_PATH.
const REACH_FILE: &str = "server.json";
/// The file that names a store: a random id made when `serve` first runs on a DATA_PATH.
const STORE_ID_FILE: &str = "store-id";

/// Where a running server answers, and which store it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    /// `http(s)://host:port` + BASE_PATH, as a client on this machine reaches it.
    pub url: String,
    /// The id of the store it serves (DATA_PATH/store-id).
    pub store_id: String,
    /// Its process id: a server removes only the file it wrote.
    pub pid: u32,
}

/// Errors reading or writing the published files.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `server.json` does not hold what `serve` writes there.
    #[error("{path} is not what scimd serve writes there: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReachError + '_ {
    move |source| ReachError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The id of the store under `data_path`, made (random, mode 0600) on first use.
pub fn store_id(data_path: &Path) -> Result<String, ReachError> {
    let path = data_path.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let id = uuid::Uuid::new_v4().to_string();
    write_private(&path, &id)?;
    Ok(id)
}

/// The id of the store under `data_path`, if one was ever made (`serve` makes it).
pub fn existing_store_id(data_path: &Path) -> Result<Option<String>, ReachError> {
    let path = data_path.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(Some(id.trim().to_owned()).filter(|id| !id.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Publishes `reach` in `data_path` (written whole, then renamed into place).
pub fn publish(data_path: &Path, reach: &Reach) -> Result<(), ReachError> {
    let path = data_path.join(REACH_FILE);
    let text = serde_json::to_string_pretty(reach).map_err(|source| ReachError::Malformed {
        path: path.clone(),
        source,
    })?;
    let partial = data_path.join(format!("{REACH_FILE}.{}", reach.pid));
    // A leftover of an earlier process with the same pid is ours to replace.
    let _ = std::fs::remove_file(&partial);
    write_private(&partial, &text)?;
    std::fs::rename(&partial, &path).map_err(io(&path))
}

/// Removes the published file if process `pid` wrote it.
pub fn withdraw(data_path: &Path, pid: u32) {
    if read(data_path).is_ok_and(|r| r.pid == pid) {
        let _ = std::fs::remove_file(data_path.join(REACH_FILE));
    }
}

/// What the server holding `data_path` published (an error when nothing is).
pub fn read(data_path: &Path) -> Result<Reach, ReachError> {
    let path = data_path.join(REACH_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|source| ReachError::Malformed { path, source })
}

/// Where a client reaches a server that listens on `listen`: the same address, except that the
/// wildcard addresses (`0.0.0.0`, `::`), which cannot be connected to portably, become loopback.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn write_private(path: &Path, contents: &str) -> Result<(), ReachError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
