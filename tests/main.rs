//! System tests: the real `outpost` binary, as root, against real parts.
//!
//! Every test builds its own isolated world with [`harness`]: a network namespace per
//! test host, its own state/run dirs, registries on 127.0.0.1 inside that namespace.

mod harness;

mod containers;
mod deployments;
mod exec;
mod harness_smoke;
mod images;
mod network;
mod pods;
mod services;
mod sources;
