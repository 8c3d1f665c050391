//! What the agent keeps between runs beside the desired state: small JSON
//! files of its own decisions (the controllers' ReplicaSets and pod names,
//! Service addresses), and the uids it makes for objects.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A JSON file of records, written (fsync'd, atomically) only when they
/// changed, so a steady state writes nothing (SD cards).
#[derive(Debug)]
pub struct Store<T> {
    path: PathBuf,
    saved: T,
}

impl<T: Serialize + DeserializeOwned + PartialEq + Clone + Default> Store<T> {
    /// Loads `path`. An unreadable file is set aside (`.corrupt`) and the
    /// records start empty; the message says so and what it costs (`lost`).
    pub fn load(path: PathBuf, lost: &str) -> (Store<T>, T, Option<String>) {
        let (records, problem) = match std::fs::read(&path) {
            Ok(data) => match serde_json::from_slice::<T>(&data) {
                Ok(r) => (r, None),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    let problem = format!(
                        "{} is unreadable ({e}); moved to {} and {lost}",
                        path.display(),
                        aside.display()
                    );
                    (T::default(), Some(problem))
                }
            },
            Err(_) => (T::default(), None),
        };
        let store = Store {
            path,
            saved: records.clone(),
        };
        (store, records, problem)
    }

    /// Writes `records` when they differ from what is on disk; whether it wrote.
    pub fn save(&mut self, records: &T) -> std::io::Result<bool> {
        if *records == self.saved {
            return Ok(false);
        }
        let data = serde_json::to_vec(records).map_err(std::io::Error::other)?;
        outpost_runtime::fsutil::write_atomic(&self.path, &data)?;
        self.saved = records.clone();
        Ok(true)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A uid shaped like Kubernetes' (a UUID) from a hash of `bytes`: the same
/// input, the same uid.
pub fn uid(bytes: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(bytes));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_and_sets_a_corrupt_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        let (mut store, records, problem) =
            Store::<Vec<u32>>::load(path.clone(), "it starts afresh");
        assert!(records.is_empty() && problem.is_none());
        assert!(!store.save(&Vec::new()).expect("save"), "nothing changed");
        assert!(!path.exists());
        assert!(store.save(&vec![1, 2]).expect("save"));
        assert!(!store.save(&vec![1, 2]).expect("save"), "written once");
        let (_, again, _) = Store::<Vec<u32>>::load(path.clone(), "it starts afresh");
        assert_eq!(again, [1, 2]);
        std::fs::write(&path, "{not json").expect("corrupt");
        let (_, records, problem) = Store::<Vec<u32>>::load(path.clone(), "it starts afresh");
        assert!(records.is_empty());
        let problem = problem.expect("a problem");
        assert!(
            problem.contains("is unreadable") && problem.ends_with("and it starts afresh"),
            "{problem}"
        );
        assert!(path.with_extension("json.corrupt").exists());
    }

    #[test]
    fn uids_are_uuid_shaped_and_stable() {
        let a = uid(b"x");
        assert_eq!(a, uid(b"x"));
        assert_ne!(a, uid(b"y"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
