//! Cluster DNS for outpost (hickory): the `cluster.local` authority built from
//! services and pods, forwarding with a cache for everything else. Built in the
//! DNS issue; the crate exists now so the workspace has its final shape.
#![forbid(unsafe_code)]
