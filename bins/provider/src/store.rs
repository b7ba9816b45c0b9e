//! The receipt store: `ZG-Res-Key` → the 0G signature document and the native receipt, in SQLite next
//! to the billing ledger, so `GET /v1/proxy/signature/{key}` keeps answering after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::{Error, Result};

/// One stored receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// 0G text: `hex(sha256(request)):hex(sha256(response))`.
    pub text: String,
    /// EIP-191 signature of `text`, `0x`-hex; empty when stored unsigned (the provider signs on read,
    /// see `Provider::zg_receipt`; rows written before that change carry their signature).
    pub signature: String,
    /// The native receipt as JSON (see README "Receipt JSON").
    pub native: String,
}

/// SQLite-backed receipt store (WAL, `synchronous=FULL`). Inserts go through one writer thread that
/// group-commits whatever is queued into one transaction (one fsync for many receipts); reads use
/// their own connection.
#[derive(Debug, Clone)]
pub struct ReceiptStore {
    writer: std::sync::mpsc::Sender<Put>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
}

struct Put {
    key: String,
    receipt: StoredReceipt,
    now_ms: u64,
    done: tokio::sync::oneshot::Sender<rusqlite::Result<()>>,
}

impl std::fmt::Debug for Put {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Put")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn write_batch(conn: &mut Connection, batch: &[Put]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO receipts (key, text, signature, native, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for p in batch {
            let r = &p.receipt;
            st.execute(params![p.key, r.text, r.signature, r.native, p.now_ms as i64])?;
        }
    }
    tx.commit()
}

/// Group commits between two checkpoint requests to the checkpointer thread.
const CHECKPOINT_EVERY_BATCHES: u32 = 16;
/// WAL size at which the writer checkpoints inline (the background checkpointer fell behind).
const WAL_INLINE_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Copies the WAL into the database in the background (`PASSIVE`: never blocks the writer), so no
/// commit pays for a checkpoint's page copying and database fsync (the writer runs with
/// `wal_autocheckpoint = 0`; SQLite's automatic checkpoint ran inside a commit every 1000 pages and
/// showed up as the p99 of the requests in that batch).
fn checkpointer_loop(conn: Connection, ticks: std::sync::mpsc::Receiver<()>) {
    while ticks.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background receipt-store checkpoint failed");
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    checkpoint_conn: Connection,
    wal_path: PathBuf,
    rx: std::sync::mpsc::Receiver<Put>,
) {
    let (tick, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpointer = std::thread::Builder::new()
        .name("zg-receipts-ckpt".into())
        .spawn(move || checkpointer_loop(checkpoint_conn, ticks));
    if let Err(e) = &checkpointer {
        tracing::warn!(error = %e, "no background receipt checkpointer; the writer checkpoints inline");
    }
    let mut batches = 0u32;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, &batch);
        batches = batches.wrapping_add(1);
        if batches.is_multiple_of(CHECKPOINT_EVERY_BATCHES) {
            let behind =
                std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0) > WAL_INLINE_CHECKPOINT_BYTES;
            if behind || checkpointer.is_err() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "inline receipt-store checkpoint failed");
                }
            } else {
                let _ = tick.try_send(()); // a full queue means a checkpoint is already due
            }
        }
        for p in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(rusqlite::Error::ToSqlConversionFailure(e.to_string().into())),
            };
            let _ = p.done.send(r);
        }
    }
    drop(tick);
    if let Ok(h) = checkpointer {
        let _ = h.join();
    }
}

impl ReceiptStore {
    /// Opens or creates the store.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |op| {
            move |source| Error::Store {
                path: path.to_owned(),
                op,
                source,
            }
        };
        let conn = open_conn(path).map_err(err("open"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS receipts (
                key TEXT PRIMARY KEY, text TEXT NOT NULL, signature TEXT NOT NULL,
                native TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID",
        )
        .map_err(err("create schema"))?;
        // Checkpoints run on the background checkpointer, not inside a commit (see `checkpointer_loop`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err("disable autocheckpoint"))?;
        let checkpoint_conn = open_conn(path).map_err(err("open checkpointer"))?;
        let reader = open_conn(path).map_err(err("open reader"))?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("zg-receipts-writer".into())
            .spawn(move || writer_loop(conn, checkpoint_conn, wal_path, rx))
            .map_err(|source| Error::Io {
                op: "spawn receipt writer for",
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_owned(),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.reader);
        let path = self.path.clone();
        let p2 = path.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a reader panicked mid-statement; the connection itself is fine.
            let c = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&c)
        })
        .await
        .map_err(|e| Error::Io {
            op: "receipt store task",
            path: p2,
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Store { path, op, source })
    }

    /// Stores a receipt under `key` (idempotent); returns once it is committed.
    pub async fn put(&self, key: String, receipt: StoredReceipt, now_ms: u64) -> Result<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let gone = || Error::Io {
            op: "receipt writer stopped for",
            path: self.path.clone(),
            source: std::io::Error::other("writer thread ended"),
        };
        self.writer
            .send(Put {
                key,
                receipt,
                now_ms,
                done,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(|source| Error::Store {
            path: self.path.clone(),
            op: "insert receipt",
            source,
        })
    }

    /// The receipt under `key`.
    pub async fn get(&self, key: String) -> Result<Option<StoredReceipt>> {
        self.read("select receipt", move |c| {
            c.prepare_cached("SELECT text, signature, native FROM receipts WHERE key = ?1")?
                .query_row(params![key], |r| {
                    Ok(StoredReceipt {
                        text: r.get(0)?,
                        signature: r.get(1)?,
                        native: r.get(2)?,
                    })
                })
                .optional()
        })
        .await
    }

    /// Number of stored receipts.
    pub async fn len(&self) -> Result<u64> {
        self.read("count receipts", |c| {
            c.query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get::<_, i64>(0))
        })
        .await
        .map(|n| n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.sqlite");
        let s = ReceiptStore::open(&p).unwrap();
        let r = StoredReceipt {
            text: "a:b".into(),
            signature: "0x01".into(),
            native: "{}".into(),
        };
        s.put("k1".into(), r.clone(), 1).await.unwrap();
        drop(s);
        let s = ReceiptStore::open(&p).unwrap();
        assert_eq!(s.get("k1".into()).await.unwrap(), Some(r));
        assert_eq!(s.get("k2".into()).await.unwrap(), None);
        assert_eq!(s.len().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn unsigned_rows_survive_background_checkpoints_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.sqlite");
        let s = ReceiptStore::open(&p).unwrap();
        // One put per commit: 3x the checkpoint period, so the checkpointer runs while writing.
        let n = 3 * CHECKPOINT_EVERY_BATCHES as u64;
        for i in 0..n {
            let r = StoredReceipt {
                text: format!("{i:064x}:{:064x}", i + 1),
                signature: String::new(),
                native: format!("{{\"n\":{i}}}"),
            };
            s.put(format!("k{i}"), r, i).await.unwrap();
        }
        drop(s);
        let s = ReceiptStore::open(&p).unwrap();
        assert_eq!(s.len().await.unwrap(), n);
        let last = s.get(format!("k{}", n - 1)).await.unwrap().unwrap();
        assert_eq!(last.text, format!("{:064x}:{:064x}", n - 1, n));
        assert_eq!(last.signature, "");
        assert_eq!(last.native, format!("{{\"n\":{}}}", n - 1));
    }
}
