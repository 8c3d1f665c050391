//! The desired state: the last good bundle of every source, merged. A bundle
//! that fails validation is rejected whole and the previous one stays. The
//! accepted bundles are persisted (fsync'd) to `<state>/desired.json` only when
//! one changes, so a node that reboots with its upstream unreachable runs its
//! last-known-good state, and steady state writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::manifest::{self, BundleError, BundleFile, Located, Object};
use crate::state::ObjectKey;

/// One source's accepted bundle.
#[derive(Debug)]
pub struct Accepted {
    pub version: String,
    pub files: Vec<BundleFile>,
    pub objects: Vec<Located>,
}

/// Two sources define the same object: the earlier source (in configuration
/// order) keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: ObjectKey,
    pub kept: String,
    pub ignored: String,
}

/// Every source's last good bundle.
#[derive(Debug)]
pub struct Desired {
    path: PathBuf,
    /// Configured sources, in order (the order decides conflicts).
    order: Vec<String>,
    accepted: BTreeMap<String, Accepted>,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    sources: BTreeMap<String, PersistedBundle>,
}

#[derive(Serialize, Deserialize)]
struct PersistedBundle {
    version: String,
    files: Vec<(String, String)>,
}

impl Desired {
    /// Loads the last-known-good bundles of the configured sources. A stored
    /// bundle that no longer validates (after an upgrade) is dropped with a warning.
    pub fn load(state_dir: &Path, sources: &[String]) -> Desired {
        let path = crate::paths::desired_state(state_dir);
        let mut desired = Desired {
            path: path.clone(),
            order: sources.to_vec(),
            accepted: BTreeMap::new(),
        };
        let persisted: Persisted = match std::fs::read(&path) {
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(
                        "{} is unreadable ({e}); starting without a last-known-good state",
                        path.display()
                    );
                    return desired;
                }
            },
            Err(_) => return desired,
        };
        for (source, bundle) in persisted.sources {
            if !sources.contains(&source) {
                continue;
            }
            let files: Vec<BundleFile> = bundle
                .files
                .into_iter()
                .filter_map(|(name, b64)| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .ok()
                        .map(|content| BundleFile { name, content })
                })
                .collect();
            match manifest::parse_bundle(&files) {
                Ok(objects) => {
                    tracing::info!(
                        source,
                        objects = objects.len(),
                        "loaded the last-known-good bundle"
                    );
                    desired.accepted.insert(
                        source,
                        Accepted {
                            version: bundle.version,
                            files,
                            objects,
                        },
                    );
                }
                Err(e) => tracing::warn!(
                    source,
                    "the stored bundle no longer validates and is dropped:\n{e}"
                ),
            }
        }
        desired
    }

    /// Takes a new bundle from `source`. Unchanged content is a no-op (returns
    /// `Ok(false)`); an invalid bundle changes nothing.
    pub fn apply(
        &mut self,
        source: &str,
        version: &str,
        files: Vec<BundleFile>,
    ) -> Result<bool, BundleError> {
        if self.accepted.get(source).is_some_and(|a| a.files == files) {
            return Ok(false);
        }
        let objects = manifest::parse_bundle(&files)?;
        self.accepted.insert(
            source.to_owned(),
            Accepted {
                version: version.to_owned(),
                files,
                objects,
            },
        );
        if let Err(e) = self.persist() {
            tracing::error!(
                "cannot persist the desired state to {}: {e:#}",
                self.path.display()
            );
        }
        Ok(true)
    }

    fn persist(&self) -> std::io::Result<()> {
        let sources = self
            .accepted
            .iter()
            .map(|(source, a)| {
                let files = a
                    .files
                    .iter()
                    .map(|f| {
                        (
                            f.name.clone(),
                            base64::engine::general_purpose::STANDARD.encode(&f.content),
                        )
                    })
                    .collect();
                (
                    source.clone(),
                    PersistedBundle {
                        version: a.version.clone(),
                        files,
                    },
                )
            })
            .collect();
        let data = serde_json::to_vec(&Persisted { sources }).map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        outpost_runtime::fsutil::write_atomic(&self.path, &data)
    }

    /// Every desired object with the source that owns it, plus conflicts.
    pub fn merged(&self) -> (BTreeMap<ObjectKey, (String, &Object)>, Vec<Conflict>) {
        let mut out: BTreeMap<ObjectKey, (String, &Object)> = BTreeMap::new();
        let mut conflicts = Vec::new();
        let ordered = self
            .order
            .iter()
            .filter_map(|s| self.accepted.get(s).map(|a| (s, a)));
        for (source, accepted) in ordered {
            for located in &accepted.objects {
                let key = located.object.key();
                match out.get(&key) {
                    Some((kept, _)) => conflicts.push(Conflict {
                        key,
                        kept: kept.clone(),
                        ignored: source.clone(),
                    }),
                    None => {
                        out.insert(key, (source.clone(), &located.object));
                    }
                }
            }
        }
        (out, conflicts)
    }

    /// The file and source an object came from (for messages).
    pub fn origin(&self, key: &ObjectKey) -> Option<(String, String)> {
        self.order.iter().find_map(|s| {
            let a = self.accepted.get(s)?;
            a.objects
                .iter()
                .find(|l| &l.object.key() == key)
                .map(|l| (s.clone(), l.file.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> BundleFile {
        BundleFile {
            name: name.into(),
            content: text.as_bytes().to_vec(),
        }
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: busybox\n";

    #[test]
    fn keeps_the_last_good_bundle_and_persists_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = vec!["file:///a".to_owned(), "https://b".to_owned()];
        let mut desired = Desired::load(dir.path(), &sources);
        assert!(desired
            .apply("file:///a", "1", vec![file("a/web.yaml", POD)])
            .expect("valid"));
        assert!(
            !desired
                .apply("file:///a", "1", vec![file("a/web.yaml", POD)])
                .expect("same"),
            "unchanged is a no-op"
        );
        let broken = POD.replace("image: busybox", "image: 12");
        let broken = broken.replace("containers:", "containers: 7\n  x:");
        assert!(desired
            .apply("file:///a", "2", vec![file("a/web.yaml", &broken)])
            .is_err());
        assert_eq!(desired.merged().0.len(), 1, "the good bundle stays");

        // The same object from a later source is a conflict; the first source keeps it.
        desired
            .apply("https://b", "e1", vec![file("https://b", POD)])
            .expect("valid");
        let (objects, conflicts) = desired.merged();
        assert_eq!(
            objects.values().next().map(|(s, _)| s.as_str()),
            Some("file:///a")
        );
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].ignored, "https://b");

        // A restart (or reboot) finds the same state on disk.
        let reloaded = Desired::load(dir.path(), &sources);
        assert_eq!(reloaded.merged().0.len(), 1);
        assert_eq!(reloaded.merged().1.len(), 1);
    }
}
