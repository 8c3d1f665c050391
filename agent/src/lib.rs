//! The outpost agent and its kubectl-shaped CLI. This is the only crate that
//! knows the Kubernetes wire format; it hands plain descriptions to the leaf
//! crates (`outpost-runtime`, and later `outpost-net`, `outpost-dns`).

pub mod agent;
pub mod api;
pub mod cli;
pub mod controllers;
pub mod desired;
pub mod events;
pub mod logging;
pub mod manifest;
pub mod paths;
pub mod pods;
pub mod quantity;
pub mod records;
pub mod services;
pub mod source;
pub mod state;
