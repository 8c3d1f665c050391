//! Containers: the OCI runtime spec built from a plain description, CRI-format
//! log files, and the lifecycle driven through the node's supervisor.

mod client;
pub mod log;
pub mod paths;
pub mod proto;
mod rootfs;
pub mod spec;
pub mod supervisor;

pub use client::{
    validate_id, ContainerRecord, Exec, ExecOutput, ExitWatch, ImageRootfs, LogConfig, Runtime,
};
pub use proto::{ContainerInfo, ExecRequest, ExitInfo, State};
