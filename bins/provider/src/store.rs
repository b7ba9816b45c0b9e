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
    /// EIP-191 signature of `text`, `0x`-hex.
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

fn writer_loop(mut conn: Connection, rx: std::sync::mpsc::Receiver<Put>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, &batch);
        for p in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(rusqlite::Error::ToSqlConversionFailure(e.to_string().into())),
            };
            let _ = p.done.send(r);
        }
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
                native TEXT NOT NULL, created_ms INTEGER NOT NULL)",
        )
        .map_err(err("create schema"))?;
        let reader = open_conn(path).map_err(err("open reader"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("zg-receipts-writer".into())
            .spawn(move || writer_loop(conn, rx))
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
}
