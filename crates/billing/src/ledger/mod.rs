//! The provider's durable fee ledger: SQLite (WAL, `synchronous=FULL`) behind one writer thread that
//! group-commits, a reader thread for SQL reads, and a per-customer in-memory serialisation point for
//! nonces and reservations.
//!
//! Modules, one job each: [`types`] (the public data), [`state`] (per-customer state in memory),
//! [`store`] (schema, write operations, load), [`writer`] (the group-commit thread), [`reader`] (the read
//! thread), `admit` (admission and completion) and `settlement` (settlement bookkeeping).
//! Durability is the writer's `COMMIT` (fsync of the WAL); throughput comes from putting many callers in one
//! commit.

mod admit;
mod reader;
mod settlement;
mod state;
mod store;
mod types;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use alloy_primitives::{Address, U256};
use rusqlite::Connection;
use tokio::sync::oneshot;

pub use self::admit::VerifiedRequest;
pub use self::types::{
    Admission, ChainAccount, Completion, LedgerConfig, NONCE_WINDOW, PendingRequest, ReceiptRecord,
    RequestKind, SettlementMode, SettlementRecord, SettlementState,
};

use self::reader::ReadJob;
use self::state::UserState;
use self::store::Op;
use self::writer::Job;
use crate::error::{Error, Result};
use crate::native::{Domains, SignedVoucher};
use crate::sig::KeyCache;
use crate::token::TokenState;

struct Inner {
    config: LedgerConfig,
    users: Mutex<HashMap<Address, Arc<Mutex<UserState>>>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Option<mpsc::Sender<ReadJob>>>,
    reader_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    poisoned: Arc<AtomicBool>,
    next_reservation: AtomicU64,
    next_request: AtomicU64,
    next_settlement: AtomicU64,
    settlement_counter: Mutex<U256>,
    keys: KeyCache,
}

/// The provider's durable fee ledger. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

fn spawn<F: FnOnce() + Send + 'static>(
    name: &str,
    path: &std::path::Path,
    f: F,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Storage {
            path: path.to_owned(),
            op: "spawn ledger thread",
            source: Box::new(e),
        })
}

impl Ledger {
    /// Opens (or creates) the ledger, reloading every customer's state. Reservations left by a
    /// crash are dropped: their requests never completed, so nothing is owed for them.
    pub fn open(config: LedgerConfig) -> Result<Self> {
        let path = config.path.clone();
        let storage = |op: &'static str| {
            let path = path.clone();
            move |e: rusqlite::Error| Error::Storage {
                path,
                op,
                source: Box::new(e),
            }
        };
        if config.max_batch == 0 {
            return Err(Error::Config {
                field: "max_batch",
                value: "0".into(),
                fix: "use at least 1",
            });
        }
        let writer_conn = store::open_conn(&path).map_err(storage("open"))?;
        let dropped = store::create(&writer_conn).map_err(storage("create schema"))?;
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped reservations of requests interrupted by a restart"
            );
        }
        let reader_conn = store::open_conn(&path).map_err(storage("open reader"))?;
        let checkpoint_conn = store::open_conn(&path).map_err(storage("open checkpointer"))?;
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let (users, counters) = store::load(&reader_conn).map_err(storage("load"))?;
        let users = users
            .into_iter()
            .map(|(k, v)| (k, Arc::new(Mutex::new(v))))
            .collect();
        let poisoned = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let max_batch = config.max_batch;
        let p2 = Arc::clone(&poisoned);
        let writer_thread = spawn("zg-ledger-writer", &path, move || {
            writer::writer_loop(writer_conn, checkpoint_conn, wal_path, rx, max_batch, p2)
        })?;
        let (read_tx, read_rx) = mpsc::channel();
        let reader_thread = spawn("zg-ledger-reader", &path, move || {
            reader::reader_loop(reader_conn, read_rx)
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                users: Mutex::new(users),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(writer_thread)),
                reader: Mutex::new(Some(read_tx)),
                reader_thread: Mutex::new(Some(reader_thread)),
                poisoned,
                next_reservation: AtomicU64::new(1),
                next_request: AtomicU64::new(counters.next_request),
                next_settlement: AtomicU64::new(counters.next_settlement),
                settlement_counter: Mutex::new(counters.settlement_nonce),
                keys: KeyCache::default(),
            }),
        })
    }

    /// Flushes and stops the writer and reader threads (pending commits finish first). Later writes fail.
    pub fn close(&self) {
        self.inner.stop();
    }

    /// This ledger's provider.
    pub fn provider(&self) -> Address {
        self.inner.config.provider
    }

    /// The deployment's EIP-712 domains.
    pub fn domains(&self) -> &Domains {
        &self.inner.config.domains
    }

    fn poisoned_err(&self) -> Error {
        Error::LedgerPoisoned {
            path: self.inner.config.path.clone(),
        }
    }

    /// The customer's state, created if it is new (only for customers whose account is known).
    fn user(&self, user: Address) -> Result<Arc<Mutex<UserState>>> {
        let mut map = self.inner.users.lock().map_err(|_| self.poisoned_err())?;
        Ok(Arc::clone(map.entry(user).or_default()))
    }

    /// The customer's state if the ledger knows the customer. Reads never create state, so a stranger's
    /// address (a forged request, an unknown account) leaves nothing behind in memory.
    fn existing(&self, user: Address) -> Option<Arc<Mutex<UserState>>> {
        self.inner.users.lock().ok()?.get(&user).cloned()
    }

    /// Enqueues a job; must be called while holding the user's lock so queue order = state order.
    fn enqueue(&self, ops: Vec<Op>) -> Result<oneshot::Receiver<Result<()>>> {
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(self.poisoned_err());
        }
        let (reply, rx) = oneshot::channel();
        let w = self.inner.writer.lock().map_err(|_| self.poisoned_err())?;
        let sender = w.as_ref().ok_or_else(|| self.poisoned_err())?;
        sender.send(Job { ops, reply }).map_err(|_| self.poisoned_err())?;
        Ok(rx)
    }

    async fn committed(&self, rx: oneshot::Receiver<Result<()>>) -> Result<()> {
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Error::Storage { op, source, .. })) => Err(Error::Storage {
                path: self.inner.config.path.clone(),
                op,
                source,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.poisoned_err()),
        }
    }

    /// Runs `f` on the reader thread's connection and waits for it without blocking the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        {
            let r = self.inner.reader.lock().map_err(|_| self.poisoned_err())?;
            let sender = r.as_ref().ok_or_else(|| self.poisoned_err())?;
            sender.send(job).map_err(|_| self.poisoned_err())?;
        }
        rx.await
            .map_err(|_| self.poisoned_err())?
            .map_err(|e| Error::Storage {
                path: self.inner.config.path.clone(),
                op,
                source: Box::new(e),
            })
    }

    /// Records the customer's on-chain account (refresh it from chain periodically and after
    /// deposits/refund requests). Admission needs it: an unknown account is refused.
    pub fn set_chain_account(&self, user: Address, account: ChainAccount) -> Result<()> {
        let u = self.user(user)?;
        let mut s = u.lock().map_err(|_| self.poisoned_err())?;
        s.chain = Some(account);
        Ok(())
    }

    /// The last recorded on-chain account.
    pub fn chain_account(&self, user: Address) -> Option<ChainAccount> {
        self.existing(user)?.lock().ok()?.chain
    }

    /// Token state for [`crate::SessionVerifier::verify`].
    pub fn token_state(&self, user: Address) -> Option<TokenState> {
        self.chain_account(user).map(|c| c.tokens)
    }

    /// Fees this customer owes that are not yet settled on chain (the 0G `unsettledfee` endpoint).
    pub fn unsettled_fee(&self, user: Address) -> U256 {
        self.existing(user)
            .and_then(|u| u.lock().ok().map(|s| s.unsettled()))
            .unwrap_or_default()
    }

    /// balance − pending refunds − unsettled − in-flight reservations; `None` for unknown accounts.
    pub fn available(&self, user: Address) -> Option<U256> {
        self.existing(user)?.lock().ok()?.available()
    }

    /// The customer's latest accepted voucher.
    pub fn latest_voucher(&self, user: Address) -> Option<SignedVoucher> {
        let mut v = self.existing(user)?.lock().ok()?.voucher.clone()?;
        v.voucher.provider = self.provider();
        Some(v)
    }

    /// Total metered native fees and the part paid on chain through vouchers.
    pub fn native_totals(&self, user: Address) -> (U256, U256) {
        self.existing(user)
            .and_then(|u| u.lock().ok().map(|s| (s.metered_native, s.voucher_paid)))
            .unwrap_or_default()
    }

    /// Number of customers the ledger holds state for (known accounts and customers with history).
    pub fn customers(&self) -> usize {
        self.inner.users.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The receipts stored under `key` (read on the reader thread).
    pub async fn receipt(&self, key: String) -> Result<Option<ReceiptRecord>> {
        self.read("select receipt", move |c| store::receipt(c, &key))
            .await
    }

    /// Number of stored receipts.
    pub async fn receipt_count(&self) -> Result<u64> {
        self.read("count receipts", store::receipt_count).await
    }
}

impl Inner {
    fn stop(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Ok(mut h) = self.writer_thread.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
        if let Ok(mut r) = self.reader.lock() {
            r.take();
        }
        if let Ok(mut h) = self.reader_thread.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}
