//! The controllers' records on disk: `<state>/controllers.json`, written
//! (fsync'd, atomically) only when a reconcile changed them, and always
//! before the pods they name are started.

use std::path::{Path, PathBuf};

use super::Records;

/// Records and where they live.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    saved: Records,
}

impl Store {
    /// Loads the records. An unreadable file is set aside (`.corrupt`) and
    /// the controllers start afresh: their pods are created again.
    pub fn load(state_dir: &Path) -> (Store, Records, Option<String>) {
        let path = state_dir.join("controllers.json");
        let (records, problem) = match std::fs::read(&path) {
            Ok(data) => match serde_json::from_slice::<Records>(&data) {
                Ok(r) => (r, None),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    let problem = format!(
                        "{} is unreadable ({e}); moved to {} and the controllers start afresh",
                        path.display(),
                        aside.display()
                    );
                    (Records::default(), Some(problem))
                }
            },
            Err(_) => (Records::default(), None),
        };
        (
            Store {
                path,
                saved: records.clone(),
            },
            records,
            problem,
        )
    }

    /// Writes `records` when they differ from what is on disk.
    pub fn save(&mut self, records: &Records) -> std::io::Result<bool> {
        if *records == self.saved {
            return Ok(false);
        }
        let data = serde_json::to_vec(records).map_err(std::io::Error::other)?;
        outpost_runtime::fsutil::write_atomic(&self.path, &data)?;
        self.saved = records.clone();
        Ok(true)
    }
}
