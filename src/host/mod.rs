//! Host inspection: everything read from /sys, /proc, /dev and /etc, through one root.

use std::path::{Path, PathBuf};

use crate::facts::Facts;
use crate::Result;

/// The root all host reads go through (`--root`), so fixture trees and rehearsals work.
#[derive(Debug, Clone)]
pub struct SysRoot(PathBuf);

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// `path` is absolute as seen on the host, e.g. `/sys/block`.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        self.0.join(rel)
    }

    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// Gathers the local facts (everything but `cloud`).
pub fn inspect(_root: &SysRoot) -> Result<Facts> {
    Err(crate::Error::Other(
        "host inspection is not implemented yet".into(),
    ))
}
