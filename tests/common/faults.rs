//! Fault injection for the store tests: a small tmpfs that fills up, libfiu's `fiu-run`/`fiu-ctrl`
//! (Debian's `fiu-utils`) and `strace`. A missing tool (or no root for the tmpfs) is a notice and a
//! pass outside CI, and a failure with `CI=true`: scripts/test installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Opts, Scimd};

/// Whether the tests run in CI, where nothing may be skipped.
fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `Some(path)` of a tool on PATH; `None` (after a notice) when missing, a panic with `CI=true`.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !ci(),
            "{name} is missing and CI=true: install the Debian package {package} (scripts/test does)"
        );
        eprintln!("NOTICE: {name} is missing (Debian package {package}); this test does nothing");
    }
    found
}

/// A tmpfs of a few MiB, mounted for one test and unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB; `None` (after a notice) without root, a panic with `CI=true`.
    pub fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("scimd-tmpfs-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if !out.status.success() {
            assert!(
                !ci(),
                "cannot mount a tmpfs (needs root) and CI=true: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "NOTICE: cannot mount a tmpfs ({}); this test does nothing",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with `name` until a write fails (ENOSPC); returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// libfiu's remote control of one process started under [`fiu_opts`].
pub struct Fiu {
    ctrl: PathBuf,
    prefix: PathBuf,
}

impl Fiu {
    /// Options that run `scimd serve` under `fiu-run -x`, its control pipes under `dir`; `None`
    /// when fiu-utils is missing (a failure with `CI=true`).
    pub fn opts(opts: Opts, dir: &Path) -> Option<(Opts, Fiu)> {
        let run = tool("fiu-run", "fiu-utils")?;
        let ctrl = tool("fiu-ctrl", "fiu-utils")?;
        let prefix = dir.join("fiu");
        let run = run.to_string_lossy().into_owned();
        let p = prefix.to_string_lossy().into_owned();
        Some((opts.wrapper(&[&run, "-x", "-f", &p]), Fiu { ctrl, prefix }))
    }

    /// Sends `command` (`enable name=…`, `disable name=…`) to the server.
    pub fn ctrl(&self, s: &Scimd, command: &str) {
        let out = Command::new(&self.ctrl)
            .arg("-f")
            .arg(&self.prefix)
            .args(["-c", command])
            .arg(s.pid().to_string())
            .output()
            .expect("run fiu-ctrl");
        assert!(
            out.status.success(),
            "fiu-ctrl -c {command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn enable(&self, s: &Scimd, point: &str) {
        self.ctrl(s, &format!("enable name={point}"));
    }

    pub fn enable_random(&self, s: &Scimd, point: &str, probability: f64) {
        self.ctrl(
            s,
            &format!("enable_random name={point},probability={probability}"),
        );
    }

    pub fn disable(&self, s: &Scimd, point: &str) {
        self.ctrl(s, &format!("disable name={point}"));
    }
}

/// Polls `GET path` at the root until it answers `status`, for up to `within`; the last status.
pub async fn wait_status(s: &Scimd, path: &str, status: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    loop {
        let got = client
            .get(s.root_url(path))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if got == status || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
