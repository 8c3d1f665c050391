//! Where batches go: a small trait, so the proxy's logic is tested without
//! a kernel and the netlink crate stays behind one implementation.

use super::conntrack::{Flow, UdpFrontends};
use super::plan::Batch;
use super::ProxyError;

/// Applies batches to nftables, and clears the conntrack entries they leave stale.
pub trait Tables {
    /// Applies `batch` as one atomic transaction: all of it or nothing.
    fn commit(&mut self, batch: &Batch) -> Result<(), ProxyError>;

    /// Deletes the UDP conntrack entries `frontends` finds stale; how many went.
    fn clear_stale_flows(&mut self, frontends: &UdpFrontends) -> Result<usize, ProxyError>;
}

/// A fake that records every batch, and refuses the next ones on request.
#[derive(Debug, Default)]
pub struct RecordingTables {
    /// The batches committed, oldest first.
    pub committed: Vec<Batch>,
    /// The batches refused, oldest first.
    pub refused: Vec<Batch>,
    /// How many of the next commits to refuse.
    pub refuse_next: usize,
    /// The UDP flows "in the kernel": stale ones go at each cleanup.
    pub flows: Vec<Flow>,
    /// How many cleanups ran.
    pub cleanups: usize,
}

impl Tables for RecordingTables {
    fn commit(&mut self, batch: &Batch) -> Result<(), ProxyError> {
        if self.refuse_next > 0 {
            self.refuse_next -= 1;
            self.refused.push(batch.clone());
            return Err(ProxyError::Commit {
                table: batch.table.clone(),
                operations: batch.ops.len(),
                full: batch.replaces_table(),
                errno: Some(2),
                detail: "refused by the recording fake".to_string(),
            });
        }
        self.committed.push(batch.clone());
        Ok(())
    }

    fn clear_stale_flows(&mut self, frontends: &UdpFrontends) -> Result<usize, ProxyError> {
        self.cleanups += 1;
        let before = self.flows.len();
        self.flows.retain(|f| !frontends.is_stale(f));
        Ok(before - self.flows.len())
    }
}
