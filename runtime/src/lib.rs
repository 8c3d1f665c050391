//! The outpost runtime: an OCI image store (pull, import, unpack, GC) and
//! container lifecycle through youki's libcontainer, with one small
//! single-threaded supervisor process as the parent of every container.
//!
//! This crate knows nothing about Kubernetes: the agent converts pods into the
//! plain descriptions defined here.

pub mod container;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod sandbox;

pub use error::{Error, Result};
