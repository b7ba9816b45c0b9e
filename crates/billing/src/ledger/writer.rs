//! The one writer thread: it folds every queued job into one transaction (one WAL fsync for many callers) and
//! hands WAL checkpoints to a background thread so no commit pays for one. This is the only group-commit loop
//! in the workspace: the provider's receipts are rows of the same transaction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use alloy_primitives::Address;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::store::{Op, apply};
use crate::error::{BoxError, Error, Result};

/// Group commits between two checkpoint requests to the checkpointer thread.
pub(super) const CHECKPOINT_EVERY_BATCHES: u32 = 16;
/// WAL size at which the writer checkpoints inline (the background checkpointer fell behind).
const WAL_INLINE_CHECKPOINT_BYTES: u64 = 64 << 20;

/// A list of writes that commit together, and who waits for the commit.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) ops: Vec<Op>,
    pub(super) reply: oneshot::Sender<Result<()>>,
}

/// Copies the WAL into the database in the background (`PASSIVE`: never blocks the writer), so no
/// commit pays for a checkpoint's page copying and database fsync (the writer runs with
/// `wal_autocheckpoint = 0`; SQLite's automatic checkpoint ran inside a commit every 1000 pages and
/// showed up as the p99 of the requests in that batch).
fn checkpointer_loop(conn: Connection, ticks: mpsc::Receiver<()>) {
    while ticks.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background WAL checkpoint failed");
        }
    }
}

/// Runs until every sender of `rx` is gone, then joins the checkpointer.
pub(super) fn writer_loop(
    mut conn: Connection,
    checkpoint_conn: Connection,
    wal_path: PathBuf,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    poisoned: Arc<AtomicBool>,
) {
    let (tick, ticks) = mpsc::sync_channel::<()>(1);
    let checkpointer = std::thread::Builder::new()
        .name("zg-ledger-ckpt".into())
        .spawn(move || checkpointer_loop(checkpoint_conn, ticks));
    if let Err(e) = &checkpointer {
        tracing::warn!(error = %e, "no background checkpointer; the writer checkpoints inline");
    }
    let mut batches = 0u32;
    // Latest `users` row per customer within one batch: earlier ones are superseded in the same commit.
    let mut last_user_row: HashMap<Address, (usize, usize)> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        last_user_row.clear();
        for (j, job) in batch.iter().enumerate() {
            for (o, op) in job.ops.iter().enumerate() {
                if let Some(user) = op.user_row() {
                    last_user_row.insert(user, (j, o));
                }
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (j, job) in batch.iter().enumerate() {
                for (o, op) in job.ops.iter().enumerate() {
                    if let Some(user) = op.user_row()
                        && last_user_row.get(&user) != Some(&(j, o))
                    {
                        continue;
                    }
                    apply(&tx, op)?;
                }
            }
            tx.commit()
        })();
        batches = batches.wrapping_add(1);
        if batches.is_multiple_of(CHECKPOINT_EVERY_BATCHES) {
            let behind =
                std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0) > WAL_INLINE_CHECKPOINT_BYTES;
            if behind || checkpointer.is_err() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "inline WAL checkpoint failed");
                }
            } else {
                let _ = tick.try_send(()); // a full queue means a checkpoint is already due
            }
        }
        let err = match result {
            Ok(()) if !poisoned.load(Ordering::SeqCst) => None,
            Ok(()) => Some("ledger poisoned".to_owned()),
            Err(e) => {
                // A failed commit leaves memory ahead of disk: refuse everything until a restart
                // reloads the truth from disk (fsync errors are not retryable; PostgreSQL learnt this).
                tracing::error!(error = %e, "ledger commit failed; poisoning the ledger");
                poisoned.store(true, Ordering::SeqCst);
                Some(e.to_string())
            }
        };
        for job in batch {
            let r = match &err {
                None => Ok(()),
                Some(msg) => Err(Error::Storage {
                    path: PathBuf::new(),
                    op: "commit",
                    source: BoxError::from(msg.clone()),
                }),
            };
            let _ = job.reply.send(r);
        }
    }
    drop(tick);
    if let Ok(h) = checkpointer {
        let _ = h.join();
    }
}
