//! Sending a plan: one transaction, re-planned from the cache if its guard
//! finds the cache stale, then waiting until the cache shows the write so
//! the next plan starts from it.

use std::time::Duration;

use crate::plan::Planned;
use crate::{Ctx, Error, Result};

/// How long a write waits for the cache to show it.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Plans with `plan` and writes the result; up to three plans when a guard
/// fails. Whether anything was written.
pub async fn write(ctx: &Ctx, mut plan: impl FnMut() -> Planned) -> Result<bool> {
    for _ in 0..3 {
        let p = plan();
        let Some(txn) = p.txn else {
            return Ok(false);
        };
        match ctx.nb.transact(txn).await {
            Ok(res) => {
                let inserted: Vec<_> = p.inserted.iter().filter_map(|u| res.uuid(u)).collect();
                if let Err(e) = ctx.view.settle(&inserted, &p.deleted, SETTLE).await {
                    tracing::warn!(error = %e, "the NB cache has not shown a write yet");
                }
                return Ok(true);
            }
            Err(ovn::Error::Transaction {
                op_index: Some(i), ..
            }) if i < p.guards => {
                tracing::debug!("NB cache behind a write; planning again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Dependency("the NB cache to catch up".into()))
}
