//! Pulling images from OCI / Docker v2 registries (through `oci-client`), with
//! mirrors from `registries.yaml`, platform selection in image indexes,
//! resumable layer downloads and a deadline for the whole pull.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::io::AsyncWriteExt;

use super::digest::Digest;
use super::reference::ImageRef;
use super::registries::{Auth, Endpoint, RegistriesConfig, Scheme};
use super::store::{ImageRecord, LayerRecord, Store, MAX_METADATA_BLOB};
use crate::error::{chain, Error, Result};

/// Media types we ask registries for (OCI first, then Docker's).
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How a pull reports progress: bytes of layer blobs in hand out of the total.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress report.
#[derive(Debug, Clone)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Layers the store already had (not fetched).
    pub cached_layers: usize,
    pub layers: usize,
}

/// Options of one pull.
#[derive(Clone)]
pub struct PullOptions {
    /// Deadline for the whole pull; what was downloaded is kept to resume.
    pub timeout: Duration,
    pub progress: Option<ProgressFn>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            timeout: Duration::from_secs(300),
            progress: None,
        }
    }
}

/// Pulls images into a store.
#[derive(Debug, Clone)]
pub struct Puller {
    store: Store,
    registries: RegistriesConfig,
}

impl Puller {
    pub fn new(store: Store, registries: RegistriesConfig) -> Self {
        // reqwest is built without a bundled crypto provider: use ring (small, no C toolchain quirks).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Puller { store, registries }
    }

    /// Pulls `image`, trying each endpoint in order (mirrors first, then the
    /// registry itself unless the mirror is mirror-only), within `opts.timeout`.
    pub async fn pull(&self, image: &ImageRef, opts: &PullOptions) -> Result<ImageRecord> {
        let endpoints = self.registries.endpoints(image);
        if endpoints.is_empty() {
            return Err(Error::Pull {
                image: image.to_string(),
                message: "no endpoint to pull from (mirror-only with no mirror)".into(),
            });
        }
        let _guard = self.store.use_guard()?;
        let attempt = async {
            let mut failures = Vec::new();
            for ep in &endpoints {
                match self.pull_from(ep, image, opts).await {
                    Ok(record) => return Ok(record),
                    Err(e) => {
                        let why = chain(&e);
                        tracing::warn!(image = %image, endpoint = %ep.host, "pull failed: {why}");
                        failures.push(format!("{}://{}: {why}", ep.scheme, ep.host));
                        // Content that fails verification or unpacking is refused, not retried elsewhere.
                        if matches!(e, Error::DigestMismatch { .. } | Error::Layer { .. }) {
                            break;
                        }
                    }
                }
            }
            Err(Error::Pull {
                image: image.to_string(),
                message: failures.join("; "),
            })
        };
        match tokio::time::timeout(opts.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Pull {
                image: image.to_string(),
                message: format!("deadline of {:?} passed; what was downloaded is kept and the next pull resumes", opts.timeout),
            }),
        }
    }

    async fn pull_from(
        &self,
        ep: &Endpoint,
        image: &ImageRef,
        opts: &PullOptions,
    ) -> Result<ImageRecord> {
        let fail = |message: String| Error::Pull {
            image: image.to_string(),
            message,
        };
        let client = client_for(ep, opts.timeout).map_err(fail)?;
        let auth = match &ep.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::IdentityToken(token) => RegistryAuth::Bearer(token.clone()),
        };
        let repo = image.repository().to_owned();
        let reference = match (image.digest(), image.tag()) {
            (Some(d), _) => Reference::with_digest(ep.host.clone(), repo.clone(), d.to_string()),
            (None, tag) => Reference::with_tag(
                ep.host.clone(),
                repo.clone(),
                tag.unwrap_or("latest").to_owned(),
            ),
        };
        let (raw, _) = client
            .pull_manifest_raw(&reference, &auth, ACCEPT)
            .await
            .map_err(|e| {
                let hint = match e {
                    oci_client::errors::OciDistributionError::UnauthorizedError { .. }
                    | oci_client::errors::OciDistributionError::AuthenticationFailure(_) => {
                        format!(
                            " (credentials for {} go under `configs` in registries.yaml)",
                            ep.host
                        )
                    }
                    _ => String::new(),
                };
                fail(format!("manifest: {}{hint}", chain(&e)))
            })?;
        let mut digest = Digest::of(&raw);
        if let Some(want) = image.digest() {
            if &digest != want {
                return Err(Error::DigestMismatch {
                    what: format!("manifest of {image}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let mut raw = raw.to_vec();
        if is_index(&raw) {
            let index: ImageIndex =
                serde_json::from_slice(&raw).map_err(|e| fail(format!("image index: {e}")))?;
            let chosen = select_platform(&index).map_err(fail)?;
            let by_digest =
                Reference::with_digest(ep.host.clone(), repo.clone(), chosen.to_string());
            let (inner, _) = client
                .pull_manifest_raw(&by_digest, &auth, ACCEPT)
                .await
                .map_err(|e| fail(format!("manifest {chosen}: {}", chain(&e))))?;
            digest = Digest::of(&inner);
            if digest != chosen {
                return Err(Error::DigestMismatch {
                    what: format!("platform manifest of {image}"),
                    expected: chosen,
                    actual: digest,
                });
            }
            raw = inner.to_vec();
        }
        let manifest: ImageManifest = serde_json::from_slice(&raw).map_err(|e| {
            fail(format!(
                "manifest {digest}: {e} (schema 1 manifests are not supported)"
            ))
        })?;

        let config_digest: Digest = manifest
            .config()
            .digest()
            .to_string()
            .parse()
            .map_err(|e| fail(format!("config: {e}")))?;
        let config = match self.store.read_blob(&config_digest) {
            Ok(data) => data,
            Err(_) => {
                if manifest.config().size() > MAX_METADATA_BLOB {
                    return Err(fail(format!(
                        "config blob of {} bytes is too large",
                        manifest.config().size()
                    )));
                }
                let mut data = Vec::new();
                client
                    .pull_blob(&reference, config_digest.to_string().as_str(), &mut data)
                    .await
                    .map_err(|e| fail(format!("config {config_digest}: {}", chain(&e))))?;
                self.store.write_blob(&config_digest, &data)?;
                data
            }
        };
        let image_config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config)
            .map_err(|e| fail(format!("config {config_digest}: {e}")))?;
        let diff_ids = image_config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(fail(format!(
                "manifest has {} layers but the config names {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
            layers.push(LayerRecord {
                digest: desc
                    .digest()
                    .to_string()
                    .parse()
                    .map_err(|e| fail(format!("layer: {e}")))?,
                diff_id: diff_id.parse().map_err(|e| fail(format!("diff id: {e}")))?,
                media_type: desc.media_type().to_string(),
                size: desc.size(),
            });
        }

        let missing: Vec<&LayerRecord> = layers
            .iter()
            .filter(|l| !self.store.has_layer(&l.diff_id))
            .collect();
        let mut progress = Progress {
            done: 0,
            total: missing.iter().map(|l| l.size).sum(),
            cached_layers: layers.len() - missing.len(),
            layers: layers.len(),
        };
        report(opts, &progress);
        for layer in missing {
            let blob = self.store.ingest_path(&layer.digest);
            download(&client, &reference, layer, &blob, opts, &mut progress)
                .await
                .map_err(|e| match e {
                    Error::Pull { message, .. } => fail(message),
                    other => other,
                })?;
            let store = self.store.clone();
            let (l, b) = (layer.clone(), blob.clone());
            let unpacked = tokio::task::spawn_blocking(move || store.unpack_blob(&b, &l, None))
                .await
                .map_err(|e| fail(format!("unpack task: {e}")))?;
            // A blob that unpacks wrongly is not kept: the next pull fetches it afresh.
            let _ = std::fs::remove_file(&blob);
            unpacked?;
        }
        self.store.write_blob(&digest, &raw)?;
        let record = ImageRecord {
            name: image.clone(),
            manifest: digest,
            config: config_digest,
            layers,
            pinned: false,
            created_at: jiff::Timestamp::now().to_string(),
        };
        self.store.commit(record.clone())?;
        Ok(record)
    }
}

fn report(opts: &PullOptions, progress: &Progress) {
    if let Some(f) = &opts.progress {
        f(progress.clone());
    }
}

/// Downloads one layer blob to `path`, resuming from what is already there, and
/// verifies its digest. A mismatch deletes the file.
async fn download(
    client: &oci_client::Client,
    reference: &Reference,
    layer: &LayerRecord,
    path: &Path,
    opts: &PullOptions,
    progress: &mut Progress,
) -> Result<()> {
    let fail = |message: String| Error::Pull {
        image: reference.whole(),
        message,
    };
    let mut offset = tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if offset > layer.size {
        offset = 0;
    }
    if offset < layer.size {
        let response = client
            .pull_blob_stream_partial(reference, layer.digest.to_string().as_str(), offset, None)
            .await
            .map_err(|e| fail(format!("layer {}: {}", layer.digest, chain(&e))))?;
        let (mut stream, resumed) = match response {
            BlobResponse::Partial(s) => (s, true),
            BlobResponse::Full(s) => (s, false),
        };
        if !resumed {
            offset = 0;
        } else if offset > 0 {
            tracing::info!(layer = %layer.digest, offset, "resuming download");
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(path)
            .await
            .map_err(Error::io("open", path))?;
        progress.done += offset;
        report(opts, progress);
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| fail(format!("layer {}: {}", layer.digest, chain(&e))))?;
            file.write_all(&chunk)
                .await
                .map_err(Error::io("write", path))?;
            progress.done += chunk.len() as u64;
            report(opts, progress);
        }
        file.flush().await.map_err(Error::io("write", path))?;
    } else {
        progress.done += offset;
    }
    let owned = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || hash_file(&owned))
        .await
        .map_err(|e| fail(format!("hash task: {e}")))?
        .map_err(Error::io("read", path))?;
    if actual != layer.digest {
        let _ = tokio::fs::remove_file(path).await;
        return Err(Error::DigestMismatch {
            what: format!("layer blob from {}", reference.registry()),
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// The sha256 of a file's content.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<Digest> {
    use sha2::Digest as _;
    let mut reader = super::store::HashingReader {
        inner: std::fs::File::open(path)?,
        hasher: sha2::Sha256::new(),
    };
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(Digest::from_hasher(reader.hasher))
}

fn client_for(ep: &Endpoint, timeout: Duration) -> Result<oci_client::Client, String> {
    let mut config = ClientConfig {
        protocol: match ep.scheme {
            Scheme::Http => ClientProtocol::Http,
            Scheme::Https => ClientProtocol::Https,
        },
        accept_invalid_certificates: ep.tls.insecure_skip_verify,
        // A registry that stops sending mid-blob fails the read instead of hanging.
        read_timeout: Some(timeout.min(Duration::from_secs(30))),
        connect_timeout: Some(timeout.min(Duration::from_secs(10))),
        platform_resolver: None,
        user_agent: concat!("outpost/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    if let Some(ca) = &ep.tls.ca_file {
        let data = std::fs::read(ca).map_err(|e| format!("read CA file {}: {e}", ca.display()))?;
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    if ep.tls.cert_file.is_some() {
        return Err(format!(
            "{}: client certificates (tls.cert_file/key_file) are not supported yet",
            ep.host
        ));
    }
    Ok(oci_client::Client::new(config))
}

fn is_index(raw: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(raw) {
        Ok(p) => {
            p.manifests.is_some()
                || p.media_type
                    .is_some_and(|m| m.contains("index") || m.contains("manifest.list"))
        }
        Err(_) => false,
    }
}

/// This host's platform as OCI names it.
pub fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "riscv64" => ("riscv64", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    }
}

/// Picks the manifest for this host (linux, our architecture, variant if known).
fn select_platform(index: &ImageIndex) -> Result<Digest, String> {
    let (arch, variant) = host_platform();
    let fits = |want_variant: bool| {
        index.manifests().iter().find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux"
                    && p.architecture().to_string() == arch
                    && (!want_variant || variant.is_none() || p.variant().as_deref() == variant)
            })
        })
    };
    match fits(true).or_else(|| fits(false)) {
        Some(m) => m
            .digest()
            .to_string()
            .parse()
            .map_err(|e| format!("index entry: {e}")),
        None => {
            let have: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| {
                    m.platform()
                        .as_ref()
                        .map(|p| format!("{}/{}", p.os(), p.architecture()))
                })
                .collect();
            Err(format!(
                "no linux/{arch} image in the index (it has: {})",
                have.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_this_hosts_platform_from_an_index() {
        let (arch, _) = host_platform();
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"s390x"}}}},
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            digest('a'),
            digest('b')
        );
        assert!(is_index(index.as_bytes()));
        let parsed: ImageIndex = serde_json::from_str(&index).expect("index");
        assert_eq!(
            select_platform(&parsed).expect("platform").to_string(),
            digest('b')
        );

        let other = index.replace(
            &format!("\"architecture\":\"{arch}\""),
            "\"architecture\":\"mips64\"",
        );
        let parsed: ImageIndex = serde_json::from_str(&other).expect("index");
        let err = select_platform(&parsed).expect_err("no match");
        assert!(
            err.contains("linux/s390x") && err.contains("linux/mips64"),
            "{err}"
        );
    }

    #[test]
    fn manifests_are_not_indexes() {
        assert!(!is_index(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#));
        assert!(is_index(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#));
    }
}
