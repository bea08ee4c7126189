//! `FILES_MODE`: the permissions of the files scimd creates (the store, projection documents, a
//! SQLite projection) and, derived from it, of its directories. The store and the documents hold
//! personal data and password hashes, so the default is 0600 (directories 0700); 0640 serves a
//! deployment whose readers of the file projection run as another user in the same group.

use std::str::FromStr;

/// A file mode: read and write for the owner at least, nothing executable, no special bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesMode(u32);

/// Why a `FILES_MODE` value was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilesModeError {
    /// Not an octal number.
    #[error("FILES_MODE must be an octal mode such as 0600 or 0640, not {0:?}")]
    NotOctal(String),
    /// A bit a data file must not have, or the owner cannot read and write.
    #[error(
        "FILES_MODE {0:04o} is not allowed: the owner must read and write (0600) and no execute or special bits may be set"
    )]
    Refused(u32),
}

impl FromStr for FilesMode {
    type Err = FilesModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim().trim_start_matches("0o");
        let mode =
            u32::from_str_radix(digits, 8).map_err(|_| FilesModeError::NotOctal(s.to_owned()))?;
        if mode & !0o666 != 0 || mode & 0o600 != 0o600 {
            return Err(FilesModeError::Refused(mode));
        }
        Ok(FilesMode(mode))
    }
}

impl FilesMode {
    /// The mode of directories: the file mode plus search (x) wherever it lets read.
    pub fn directories(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }

    /// Sets the process umask so that files are created with this mode and directories with
    /// [`directories`](Self::directories): every file scimd or a library it uses creates gets
    /// them, without each place having to ask. Files that exist already keep their mode.
    pub fn apply(self) {
        let umask = 0o777 & !self.directories();
        // SAFETY: umask(2) only replaces the process's file mode creation mask.
        unsafe {
            libc::umask(umask as libc::mode_t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_give_their_directories_search_where_they_let_read() {
        assert_eq!("0600".parse::<FilesMode>().unwrap().directories(), 0o700);
        assert_eq!("640".parse::<FilesMode>().unwrap().directories(), 0o750);
        assert_eq!("0644".parse::<FilesMode>().unwrap().directories(), 0o755);
    }

    #[test]
    fn modes_a_data_file_must_not_have_are_refused() {
        for bad in ["0700", "0400", "4600", "0611", "rw", ""] {
            assert!(bad.parse::<FilesMode>().is_err(), "{bad}");
        }
    }
}
