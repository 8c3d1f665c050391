//! The crate's error type: one variant per module, each carrying what was acted on.

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A container operation was refused or failed.
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    /// The supervisor could not be reached or answered nonsense.
    #[error("supervisor: {message}")]
    Supervisor { message: String },
    /// The image store refused or failed an operation.
    #[error("image store: {message}")]
    Store { message: String },
    /// Content does not hash to the digest that names it: refused, nothing kept.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: crate::image::Digest,
        actual: crate::image::Digest,
    },
    /// A layer could not be unpacked (hostile or broken archive).
    #[error("layer {digest}")]
    Layer {
        digest: crate::image::Digest,
        #[source]
        source: crate::image::unpack::UnpackError,
    },
    /// A pull failed on every endpoint (each attempt listed).
    #[error("pull {image}: {message}")]
    Pull { image: String, message: String },
    /// A registries.yaml problem.
    #[error(transparent)]
    Registries(#[from] crate::image::registries::RegistriesError),
    /// An archive to import is not an OCI or docker archive we can read.
    #[error("import {}: {message}", path.display())]
    Import {
        path: std::path::PathBuf,
        message: String,
    },
    /// A container's root filesystem could not be assembled.
    #[error("rootfs {}: {message}", path.display())]
    Rootfs {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the action and the path it was acting on.
    pub fn io(
        what: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

/// An error and its causes on one line (`a: b: c`), for messages that embed
/// another error as text.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
