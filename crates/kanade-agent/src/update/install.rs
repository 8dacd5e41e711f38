//! Files of a self-update, all under `<data_dir>/update/`: `boot.json` (the sentinel),
//! `staging/` (a downloaded release, complete or absent) and `last-good/` (the binary that ran
//! before the swap). Every step writes a temp file and renames it, so a crash or a full disk
//! leaves either the old file or the new one, never half of one; the running binary is only
//! touched by the final rename.

use std::path::{Path, PathBuf};

use kanade_shared::Version;
pub use kanade_shared::binary::{replace, swap_in, write_complete};

pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        Self { root: data_dir.join("update") }
    }

    pub fn boot_state(&self) -> PathBuf {
        self.root.join("boot.json")
    }

    pub fn staged(&self, version: &Version) -> PathBuf {
        self.root.join("staging").join(format!("kanade-agent-{version}{}", std::env::consts::EXE_SUFFIX))
    }

    pub fn last_good(&self) -> PathBuf {
        self.root.join("last-good").join(format!("kanade-agent{}", std::env::consts::EXE_SUFFIX))
    }
}
