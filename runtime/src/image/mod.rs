//! The image store: content-addressed blobs, image records, layer unpacking,
//! pulling from registries, air-gap import and garbage collection.

pub mod digest;
pub mod import;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use reference::ImageRef;
pub use registries::RegistriesConfig;
