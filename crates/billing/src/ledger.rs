//! The provider's durable fee ledger: SQLite (WAL, `synchronous=FULL`) behind one writer thread that
//! group-commits, with a per-customer in-memory serialisation point for nonces and reservations.
//!
//! Why SQLite over redb: settlement needs ad-hoc selections (a customer's unsettled rows, open
//! settlements, sums) that SQL states in one line; the file is inspectable with the `sqlite3` CLI
//! during incidents; WAL gives concurrent readers beside the single writer. Durability is the
//! writer's `COMMIT` (fsync of the WAL); throughput comes from putting many callers in one commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use alloy_primitives::aliases::U1024;
use alloy_primitives::{Address, B256, U256};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::{BoxError, Error, Result};
use crate::meter::Usage;
use crate::native::{Domains, SignedRequest, SignedVoucher, Voucher};
use crate::sig::{KeyCache, parse_signature_bytes};
use crate::token::{SessionToken, TokenState};

/// Width of the native nonce reordering window: a nonce up to this far below the highest one seen
/// is still accepted once; anything older is rejected forever.
pub const NONCE_WINDOW: u32 = 1024;

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// SQLite database file (created if missing).
    pub path: PathBuf,
    /// This provider's address.
    pub provider: Address,
    /// EIP-712 domains of the deployment (native requests and vouchers).
    pub domains: Domains,
    /// Metered native fees a customer may owe beyond its latest voucher before requests are refused.
    pub max_unvouchered: U256,
    /// Most jobs folded into one commit.
    pub max_batch: usize,
}

impl LedgerConfig {
    /// Defaults: 1e16 neuron (0.01 0G) of unvouchered credit, batches of up to 1024 jobs.
    pub fn new(path: impl Into<PathBuf>, provider: Address, domains: Domains) -> Self {
        Self {
            path: path.into(),
            provider,
            domains,
            max_unvouchered: U256::from(10_000_000_000_000_000u64),
            max_batch: 1024,
        }
    }
}

/// A customer's on-chain account as last read from InferenceServing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainAccount {
    /// `Account.balance`.
    pub balance: U256,
    /// `Account.pendingRefund`.
    pub pending_refund: U256,
    /// `Account.nonce` (TEE settlement nonce).
    pub nonce: U256,
    /// Session-token generation and revocation bitmap.
    pub tokens: TokenState,
}

/// Which protocol admitted a request, which decides how it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// 0G session token: settled by `settleFeesWithTEE`.
    Session,
    /// Native signed request: settled by the customer's cumulative voucher.
    Native,
}

impl RequestKind {
    fn code(self) -> i64 {
        match self {
            Self::Session => 0,
            Self::Native => 1,
        }
    }
}

/// An open reservation of a request's fee cap. Finish it with [`Ledger::complete`] or
/// [`Ledger::release`]; an abandoned one is dropped when the ledger is next opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "complete or release the admission, or its reservation stays held"]
pub struct Admission {
    /// Reservation id.
    pub id: u64,
    /// The customer.
    pub user: Address,
    /// Amount reserved.
    pub fee_cap: U256,
    /// Protocol.
    pub kind: RequestKind,
    /// The native request's nonce.
    pub nonce: Option<U256>,
}

/// What the provider learnt from serving an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// sha256 of the request body as received.
    pub request_hash: B256,
    /// sha256 of the response bytes as sent.
    pub response_hash: B256,
    /// The model.
    pub model: String,
    /// Usage from the upstream; `None` = not billed.
    pub usage: Option<Usage>,
    /// Fee metered from `usage`.
    pub fee: U256,
    /// The receipt signature given to the customer.
    pub receipt_signature: Vec<u8>,
}

/// One billed request not yet settled, as the settler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// Ledger row id.
    pub id: u64,
    /// sha256 of the request.
    pub request_hash: B256,
    /// sha256 of the response.
    pub response_hash: B256,
    /// Usage billed.
    pub usage: Usage,
    /// Fee billed.
    pub fee: U256,
    /// When it was served.
    pub created_ms: u64,
}

/// Settlement mode of a [`SettlementRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementMode {
    /// `settleFeesWithTEE`.
    Tee,
    /// `settleVouchers`.
    Voucher,
}

/// Where a settlement stands; persisted before each chain step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// Signed and stored; maybe sent (a crash may have hidden the hash).
    Prepared,
    /// Sent in the recorded transaction.
    Sent,
    /// Applied on chain and committed locally.
    Done,
    /// Rejected on chain; its rows are free again.
    Failed,
}

impl SettlementState {
    fn code(self) -> i64 {
        match self {
            Self::Prepared => 0,
            Self::Sent => 1,
            Self::Done => 2,
            Self::Failed => 3,
        }
    }
    fn from_code(c: i64) -> Self {
        match c {
            0 => Self::Prepared,
            1 => Self::Sent,
            2 => Self::Done,
            _ => Self::Failed,
        }
    }
}

/// A settlement item as stored: exactly the signed payload, so it can be re-sent byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    /// Local id.
    pub id: u64,
    /// Mode.
    pub mode: SettlementMode,
    /// The customer.
    pub user: Address,
    /// TEE nonce, or the voucher's nonce.
    pub nonce: U256,
    /// `totalFee`, or the voucher's cumulative amount.
    pub amount: U256,
    /// `requestsHash` (TEE mode; zero for vouchers).
    pub requests_hash: B256,
    /// The 65-byte signature (TEE signer's or customer's).
    pub signature: Vec<u8>,
    /// State.
    pub state: SettlementState,
    /// Transaction that carried it, once known.
    pub tx_hash: Option<B256>,
}

// ---------------------------------------------------------------------------------------------
// In-memory per-customer state (the serialisation point).

#[derive(Debug, Default)]
struct UserState {
    chain: Option<ChainAccount>,
    nonce_high: Option<U256>,
    /// Bit i set = nonce `nonce_high - i` used.
    window: U1024,
    reserved: U256,
    reservations: HashMap<u64, U256>,
    session_unsettled: U256,
    metered_native: U256,
    voucher: Option<SignedVoucher>,
    voucher_paid: U256,
    /// A TEE settlement for this customer is prepared or sent: no second one until it resolves.
    open_settlement: bool,
}

impl UserState {
    fn unsettled(&self) -> U256 {
        self.session_unsettled
            .saturating_add(self.metered_native.saturating_sub(self.voucher_paid))
    }

    fn available(&self) -> Option<U256> {
        let c = self.chain?;
        Some(
            c.balance
                .saturating_sub(c.pending_refund)
                .saturating_sub(self.unsettled())
                .saturating_sub(self.reserved),
        )
    }

    /// Checks a nonce against the window without recording it.
    fn check_nonce(&self, user: Address, nonce: U256) -> Result<()> {
        let Some(high) = self.nonce_high else {
            return Ok(());
        };
        if nonce > high {
            return Ok(());
        }
        let d = high.saturating_sub(nonce);
        let window = U256::from(NONCE_WINDOW);
        if d >= window {
            let lowest = high.saturating_sub(window).saturating_add(U256::from(1));
            return Err(Error::NonceTooOld { user, nonce, lowest });
        }
        // d < 1024 here, so the conversion is exact.
        let d = d.to::<usize>();
        if self.window.bit(d) {
            return Err(Error::NonceReplayed { user, nonce });
        }
        Ok(())
    }

    /// Records a nonce that passed [`UserState::check_nonce`].
    fn record_nonce(&mut self, nonce: U256) {
        match self.nonce_high {
            Some(high) if nonce <= high => {
                let d = high.saturating_sub(nonce).to::<usize>();
                self.window.set_bit(d, true);
            }
            Some(high) => {
                let shift = nonce.saturating_sub(high);
                self.window = if shift >= U256::from(NONCE_WINDOW) {
                    U1024::ZERO
                } else {
                    self.window.wrapping_shl(shift.to::<usize>())
                };
                self.window.set_bit(0, true);
                self.nonce_high = Some(nonce);
            }
            None => {
                self.window = U1024::from(1u8);
                self.nonce_high = Some(nonce);
            }
        }
    }

    fn row(&self, user: Address) -> UserRow {
        UserRow {
            user,
            nonce_high: self.nonce_high,
            window: self.window,
            metered_native: self.metered_native,
            voucher_paid: self.voucher_paid,
            voucher: self.voucher.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writer thread.

#[derive(Debug)]
struct UserRow {
    user: Address,
    nonce_high: Option<U256>,
    window: U1024,
    metered_native: U256,
    voucher_paid: U256,
    voucher: Option<SignedVoucher>,
}

#[derive(Debug)]
struct RequestRow {
    id: u64,
    user: Address,
    kind: RequestKind,
    nonce: Option<U256>,
    completion: Completion,
    usage: Usage,
    created_ms: u64,
}

#[derive(Debug)]
enum Op {
    User(UserRow),
    InsertRequest(Box<RequestRow>),
    PrepareSettlement {
        record: SettlementRecord,
        request_ids: Vec<u64>,
        counter: U256,
        created_ms: u64,
    },
    MarkSent {
        ids: Vec<u64>,
        tx_hash: B256,
    },
    FinishSettlement {
        id: u64,
        state: SettlementState,
        paid: U256,
    },
    /// Requests of a partially paid settlement that it did not pay for: pending again.
    FreeRequests(Vec<u64>),
}

struct Job {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<()>>,
}

fn u256_blob(v: &U256) -> [u8; 32] {
    v.to_be_bytes::<32>()
}

fn blob_u256(b: &[u8]) -> U256 {
    U256::try_from_be_slice(b).unwrap_or_default()
}

fn blob_addr(b: &[u8]) -> Address {
    if b.len() == 20 {
        Address::from_slice(b)
    } else {
        Address::ZERO
    }
}

fn blob_b256(b: &[u8]) -> B256 {
    if b.len() == 32 {
        B256::from_slice(b)
    } else {
        B256::ZERO
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users(
  user BLOB PRIMARY KEY, nonce_high BLOB, window BLOB NOT NULL, metered_native BLOB NOT NULL,
  voucher_paid BLOB NOT NULL, voucher_amount BLOB, voucher_nonce BLOB, voucher_sig BLOB);
CREATE TABLE IF NOT EXISTS reservations(
  id INTEGER PRIMARY KEY, user BLOB NOT NULL, amount BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests(
  id INTEGER PRIMARY KEY, user BLOB NOT NULL, kind INTEGER NOT NULL, nonce BLOB,
  request_hash BLOB NOT NULL, response_hash BLOB NOT NULL, model TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, fee BLOB NOT NULL,
  receipt_sig BLOB NOT NULL, created_ms INTEGER NOT NULL, settlement_id INTEGER);
CREATE INDEX IF NOT EXISTS requests_by_settlement ON requests(user, kind, settlement_id);
CREATE TABLE IF NOT EXISTS settlements(
  id INTEGER PRIMARY KEY, mode INTEGER NOT NULL, user BLOB NOT NULL, nonce BLOB NOT NULL,
  amount BLOB NOT NULL, requests_hash BLOB NOT NULL, signature BLOB NOT NULL, state INTEGER NOT NULL,
  tx_hash BLOB, paid BLOB, created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS settlements_open ON settlements(state);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
";

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::User(u) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO users(user, nonce_high, window, metered_native, voucher_paid,
                 voucher_amount, voucher_nonce, voucher_sig) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            )?
            .execute(params![
                u.user.as_slice(),
                u.nonce_high.as_ref().map(u256_blob),
                u.window.to_be_bytes::<128>(),
                u256_blob(&u.metered_native),
                u256_blob(&u.voucher_paid),
                u.voucher.as_ref().map(|v| u256_blob(&v.voucher.cumulativeAmount)),
                u.voucher.as_ref().map(|v| u256_blob(&v.voucher.nonce)),
                u.voucher.as_ref().map(|v| v.signature.as_bytes()),
            ])?;
        }
        Op::InsertRequest(r) => {
            tx.prepare_cached(
                "INSERT INTO requests(id, user, kind, nonce, request_hash, response_hash, model, prompt_tokens,
                 completion_tokens, fee, receipt_sig, created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
            )?
            .execute(params![
                i64_of(r.id),
                r.user.as_slice(),
                r.kind.code(),
                r.nonce.as_ref().map(u256_blob),
                r.completion.request_hash.as_slice(),
                r.completion.response_hash.as_slice(),
                r.completion.model,
                i64_of(r.usage.prompt_tokens),
                i64_of(r.usage.completion_tokens),
                u256_blob(&r.completion.fee),
                r.completion.receipt_signature,
                i64_of(r.created_ms),
            ])?;
        }
        Op::PrepareSettlement {
            record,
            request_ids,
            counter,
            created_ms,
        } => {
            tx.prepare_cached(
                "INSERT INTO settlements(id, mode, user, nonce, amount, requests_hash, signature, state, created_ms)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            )?
            .execute(params![
                i64_of(record.id),
                match record.mode {
                    SettlementMode::Tee => 0,
                    SettlementMode::Voucher => 1,
                },
                record.user.as_slice(),
                u256_blob(&record.nonce),
                u256_blob(&record.amount),
                record.requests_hash.as_slice(),
                record.signature,
                record.state.code(),
                i64_of(*created_ms),
            ])?;
            let mut st = tx.prepare_cached("UPDATE requests SET settlement_id = ?1 WHERE id = ?2")?;
            for id in request_ids {
                st.execute(params![i64_of(record.id), i64_of(*id)])?;
            }
            tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES ('settlement_nonce', ?1)")?
                .execute(params![u256_blob(counter)])?;
        }
        Op::MarkSent { ids, tx_hash } => {
            let mut st = tx.prepare_cached("UPDATE settlements SET state = 1, tx_hash = ?2 WHERE id = ?1")?;
            for id in ids {
                st.execute(params![i64_of(*id), tx_hash.as_slice()])?;
            }
        }
        Op::FinishSettlement { id, state, paid } => {
            tx.prepare_cached("UPDATE settlements SET state = ?2, paid = ?3 WHERE id = ?1")?
                .execute(params![i64_of(*id), state.code(), u256_blob(paid)])?;
            if *state == SettlementState::Failed {
                tx.prepare_cached("UPDATE requests SET settlement_id = NULL WHERE settlement_id = ?1")?
                    .execute(params![i64_of(*id)])?;
            }
        }
        Op::FreeRequests(ids) => {
            let mut st = tx.prepare_cached("UPDATE requests SET settlement_id = NULL WHERE id = ?1")?;
            for id in ids {
                st.execute(params![i64_of(*id)])?;
            }
        }
    }
    Ok(())
}

/// Group commits between two checkpoint requests to the checkpointer thread.
const CHECKPOINT_EVERY_BATCHES: u32 = 16;
/// WAL size at which the writer checkpoints inline (the background checkpointer fell behind).
const WAL_INLINE_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Copies the WAL into the database in the background (`PASSIVE`: never blocks the writer), so no
/// commit pays for a checkpoint's page copying and database fsync (the writer runs with
/// `wal_autocheckpoint = 0`).
fn checkpointer_loop(conn: Connection, ticks: mpsc::Receiver<()>) {
    while ticks.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background WAL checkpoint failed");
        }
    }
}

fn writer_loop(
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
                if let Op::User(u) = op {
                    last_user_row.insert(u.user, (j, o));
                }
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (j, job) in batch.iter().enumerate() {
                for (o, op) in job.ops.iter().enumerate() {
                    if let Op::User(u) = op
                        && last_user_row.get(&u.user) != Some(&(j, o))
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

// ---------------------------------------------------------------------------------------------

struct Inner {
    config: LedgerConfig,
    users: Mutex<HashMap<Address, Arc<Mutex<UserState>>>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
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

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: in WAL mode every COMMIT fsyncs the WAL, so a committed row survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Checkpoints run on the background checkpointer, not inside a commit (see `checkpointer_loop`);
    // after a checkpoint resets the WAL, it is truncated back to this size.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 16i64 << 20)?;
    Ok(conn)
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
        let writer_conn = open_conn(&path).map_err(storage("open"))?;
        writer_conn
            .execute_batch(SCHEMA)
            .map_err(storage("create schema"))?;
        let dropped = writer_conn
            .execute("DELETE FROM reservations", [])
            .map_err(storage("drop reservations"))?;
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped reservations of requests interrupted by a restart"
            );
        }
        let reader = open_conn(&path).map_err(storage("open reader"))?;
        let checkpoint_conn = open_conn(&path).map_err(storage("open checkpointer"))?;
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let (users, counters) = Self::load(&reader).map_err(storage("load"))?;
        let poisoned = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let max_batch = config.max_batch;
        let p2 = Arc::clone(&poisoned);
        let handle = std::thread::Builder::new()
            .name("zg-ledger-writer".into())
            .spawn(move || writer_loop(writer_conn, checkpoint_conn, wal_path, rx, max_batch, p2))
            .map_err(|e| Error::Storage {
                path: path.clone(),
                op: "spawn writer",
                source: Box::new(e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                users: Mutex::new(users),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                reader: Mutex::new(reader),
                poisoned,
                next_reservation: AtomicU64::new(1),
                next_request: AtomicU64::new(counters.0),
                next_settlement: AtomicU64::new(counters.1),
                settlement_counter: Mutex::new(counters.2),
                keys: KeyCache::default(),
            }),
        })
    }

    #[allow(clippy::type_complexity, reason = "private loader")]
    fn load(
        conn: &Connection,
    ) -> rusqlite::Result<(HashMap<Address, Arc<Mutex<UserState>>>, (u64, u64, U256))> {
        let mut states: HashMap<Address, UserState> = HashMap::new();
        let mut st = conn.prepare(
            "SELECT user, nonce_high, window, metered_native, voucher_paid, voucher_amount, voucher_nonce, voucher_sig FROM users",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let user = blob_addr(&r.get::<_, Vec<u8>>(0)?);
            let window_bytes: Vec<u8> = r.get(2)?;
            let mut s = UserState {
                nonce_high: r.get::<_, Option<Vec<u8>>>(1)?.map(|b| blob_u256(&b)),
                window: U1024::try_from_be_slice(&window_bytes).unwrap_or_default(),
                metered_native: blob_u256(&r.get::<_, Vec<u8>>(3)?),
                voucher_paid: blob_u256(&r.get::<_, Vec<u8>>(4)?),
                ..UserState::default()
            };
            let amount: Option<Vec<u8>> = r.get(5)?;
            let nonce: Option<Vec<u8>> = r.get(6)?;
            let sig: Option<Vec<u8>> = r.get(7)?;
            if let (Some(a), Some(n), Some(sig)) = (amount, nonce, sig)
                && let Ok(signature) = parse_signature_bytes(&sig)
            {
                s.voucher = Some(SignedVoucher {
                    voucher: Voucher {
                        user,
                        provider: Address::ZERO, // filled below
                        cumulativeAmount: blob_u256(&a),
                        nonce: blob_u256(&n),
                    },
                    signature,
                });
            }
            states.insert(user, s);
        }
        drop(rows);
        let mut st = conn.prepare(
            "SELECT r.user, r.fee FROM requests r LEFT JOIN settlements s ON r.settlement_id = s.id
             WHERE r.kind = 0 AND (r.settlement_id IS NULL OR s.state <> 2)",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let user = blob_addr(&r.get::<_, Vec<u8>>(0)?);
            let fee = blob_u256(&r.get::<_, Vec<u8>>(1)?);
            let s = states.entry(user).or_default();
            s.session_unsettled = s.session_unsettled.saturating_add(fee);
        }
        drop(rows);
        let mut st =
            conn.prepare("SELECT DISTINCT user FROM settlements WHERE mode = 0 AND state IN (0, 1)")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            states
                .entry(blob_addr(&r.get::<_, Vec<u8>>(0)?))
                .or_default()
                .open_settlement = true;
        }
        drop(rows);
        let max_req: Option<i64> = conn.query_row("SELECT MAX(id) FROM requests", [], |r| r.get(0))?;
        let max_set: Option<i64> = conn.query_row("SELECT MAX(id) FROM settlements", [], |r| r.get(0))?;
        let counter: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = 'settlement_nonce'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let users = states
            .into_iter()
            .map(|(k, v)| (k, Arc::new(Mutex::new(v))))
            .collect();
        Ok((
            users,
            (
                u64_of(max_req.unwrap_or(0)).saturating_add(1),
                u64_of(max_set.unwrap_or(0)).saturating_add(1),
                counter.map(|c| blob_u256(&c)).unwrap_or_default(),
            ),
        ))
    }

    /// Flushes and stops the writer thread (pending commits finish first). Later writes fail.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut h) = self.inner.writer_thread.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
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

    fn user(&self, user: Address) -> Result<Arc<Mutex<UserState>>> {
        let mut map = self.inner.users.lock().map_err(|_| self.poisoned_err())?;
        Ok(Arc::clone(map.entry(user).or_default()))
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
        self.user(user).ok()?.lock().ok()?.chain
    }

    /// Token state for [`crate::SessionVerifier::verify`].
    pub fn token_state(&self, user: Address) -> Option<TokenState> {
        self.chain_account(user).map(|c| c.tokens)
    }

    /// Fees this customer owes that are not yet settled on chain (the 0G `unsettledfee` endpoint).
    pub fn unsettled_fee(&self, user: Address) -> U256 {
        self.user(user)
            .ok()
            .and_then(|u| u.lock().ok().map(|s| s.unsettled()))
            .unwrap_or_default()
    }

    /// balance − pending refunds − unsettled − in-flight reservations; `None` for unknown accounts.
    pub fn available(&self, user: Address) -> Option<U256> {
        self.user(user).ok()?.lock().ok()?.available()
    }

    /// The customer's latest accepted voucher.
    pub fn latest_voucher(&self, user: Address) -> Option<SignedVoucher> {
        let mut v = self.user(user).ok()?.lock().ok()?.voucher.clone()?;
        v.voucher.provider = self.provider();
        Some(v)
    }

    /// Total metered native fees and the part paid on chain through vouchers.
    pub fn native_totals(&self, user: Address) -> (U256, U256) {
        self.user(user)
            .ok()
            .and_then(|u| u.lock().ok().map(|s| (s.metered_native, s.voucher_paid)))
            .unwrap_or_default()
    }

    /// Admits a native signed request: checks provider, body hash, signatures (cached keys), nonce
    /// window, voucher, and balance, then durably records the nonce and voucher (one group commit) and
    /// reserves the fee cap in memory. Any rejection leaves the ledger untouched. `now_ms` is unused
    /// today (kept for time-bound checks).
    pub async fn admit_native(&self, req: &SignedRequest, body: &[u8], now_ms: u64) -> Result<Admission> {
        let _ = now_ms;
        let provider = self.provider();
        let r = &req.request;
        if r.provider != provider {
            return Err(Error::WrongProvider {
                expected: provider,
                got: r.provider,
            });
        }
        req.check_body(body)?;
        let domains = &self.inner.config.domains;
        domains.verify_request(&self.inner.keys, req)?;
        if let Some(v) = &req.voucher {
            if v.voucher.user != r.user {
                return Err(Error::VoucherUserMismatch {
                    request_user: r.user,
                    voucher_user: v.voucher.user,
                });
            }
            if v.voucher.provider != provider {
                return Err(Error::WrongProvider {
                    expected: provider,
                    got: v.voucher.provider,
                });
            }
            domains.verify_voucher(&self.inner.keys, v)?;
        }
        let user = r.user;
        let id = self.inner.next_reservation.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let u = self.user(user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            s.check_nonce(user, r.nonce)?;
            let new_voucher = match (&req.voucher, &s.voucher) {
                (Some(v), Some(old)) if v.voucher.nonce > old.voucher.nonce => {
                    if v.voucher.cumulativeAmount < old.voucher.cumulativeAmount {
                        return Err(Error::VoucherRegressed {
                            user,
                            previous: old.voucher.cumulativeAmount,
                            offered: v.voucher.cumulativeAmount,
                        });
                    }
                    Some(v.clone())
                }
                (Some(v), None) => Some(v.clone()),
                _ => None, // no voucher, or a stale one that arrived out of order
            };
            let vouched = new_voucher
                .as_ref()
                .or(s.voucher.as_ref())
                .map(|v| v.voucher.cumulativeAmount)
                .unwrap_or_default();
            if s.metered_native.saturating_sub(vouched) > self.inner.config.max_unvouchered {
                return Err(Error::VoucherBehind {
                    user,
                    owed: s.metered_native,
                    vouched,
                });
            }
            let available = s.available().ok_or(Error::UnknownAccount { user })?;
            if r.feeCap > available {
                return Err(Error::InsufficientBalance {
                    user,
                    needed: r.feeCap,
                    available,
                });
            }
            // All checks passed: mutate, then enqueue under the lock.
            s.record_nonce(r.nonce);
            if let Some(v) = new_voucher {
                s.voucher = Some(v);
            }
            s.reserved = s.reserved.saturating_add(r.feeCap);
            s.reservations.insert(id, r.feeCap);
            // Only the nonce window and voucher are durable; the reservation lives in memory (a
            // restart ends every in-flight request, so its reservation would be dropped anyway).
            self.enqueue(vec![Op::User(s.row(user))])?
        };
        self.committed(rx).await?;
        Ok(Admission {
            id,
            user,
            fee_cap: r.feeCap,
            kind: RequestKind::Native,
            nonce: Some(r.nonce),
        })
    }

    /// Admits a request authenticated by a (verified) 0G session token, reserving `fee_cap`
    /// (the provider's bound on this request's fee, e.g. from `max_tokens`). The reservation is in
    /// memory only, so this never waits for a disk commit.
    pub async fn admit_session(&self, token: &SessionToken, fee_cap: U256, now_ms: u64) -> Result<Admission> {
        let user = token.user();
        let id = self.inner.next_reservation.fetch_add(1, Ordering::Relaxed);
        {
            let u = self.user(user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let available = s.available().ok_or(Error::UnknownAccount { user })?;
            if fee_cap > available {
                return Err(Error::InsufficientBalance {
                    user,
                    needed: fee_cap,
                    available,
                });
            }
            if self.inner.poisoned.load(Ordering::SeqCst) {
                return Err(self.poisoned_err());
            }
            // Nothing durable: a session admission is only an in-memory reservation (a restart ends
            // every in-flight request, so it would be dropped anyway). No commit, no fsync wait.
            s.reserved = s.reserved.saturating_add(fee_cap);
            s.reservations.insert(id, fee_cap);
        }
        let _ = now_ms;
        Ok(Admission {
            id,
            user,
            fee_cap,
            kind: RequestKind::Session,
            nonce: None,
        })
    }

    /// Releases an admission whose request was not served (upstream failure): nothing is billed.
    pub async fn release(&self, admission: Admission) -> Result<()> {
        let u = self.user(admission.user)?;
        let mut s = u.lock().map_err(|_| self.poisoned_err())?;
        let amount = s
            .reservations
            .remove(&admission.id)
            .ok_or(Error::ReservationUnknown(admission.id))?;
        s.reserved = s.reserved.saturating_sub(amount);
        Ok(())
    }

    /// Records a served request and releases its reservation. Returns the ledger row id, or `None`
    /// when the upstream reported no usage (not billed). A native request is billed at most its
    /// signed fee cap.
    pub async fn complete(
        &self,
        admission: Admission,
        mut done: Completion,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let user = admission.user;
        let rx_and_id = {
            let u = self.user(user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let amount = s
                .reservations
                .remove(&admission.id)
                .ok_or(Error::ReservationUnknown(admission.id))?;
            s.reserved = s.reserved.saturating_sub(amount);
            let mut ops = Vec::new();
            let mut row_id = None;
            if let Some(usage) = done.usage {
                if admission.kind == RequestKind::Native && done.fee > admission.fee_cap {
                    tracing::warn!(%user, fee = %done.fee, cap = %admission.fee_cap, "fee above signed cap; billing the cap");
                    done.fee = admission.fee_cap;
                }
                match admission.kind {
                    RequestKind::Session => {
                        s.session_unsettled = s.session_unsettled.saturating_add(done.fee)
                    }
                    RequestKind::Native => {
                        s.metered_native = s.metered_native.saturating_add(done.fee);
                        ops.push(Op::User(s.row(user)));
                    }
                }
                let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
                row_id = Some(id);
                ops.push(Op::InsertRequest(Box::new(RequestRow {
                    id,
                    user,
                    kind: admission.kind,
                    nonce: admission.nonce,
                    completion: done,
                    usage,
                    created_ms: now_ms,
                })));
            }
            // Not billed (no usage): nothing to persist, the reservation was only in memory.
            let rx = if ops.is_empty() {
                None
            } else {
                Some(self.enqueue(ops)?)
            };
            (rx, row_id)
        };
        if let Some(rx) = rx_and_id.0 {
            self.committed(rx).await?;
        }
        Ok(rx_and_id.1)
    }

    // ---------------------------------------------------------------- settlement bookkeeping

    fn read<T>(&self, op: &'static str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.inner.reader.lock().map_err(|_| self.poisoned_err())?;
        f(&conn).map_err(|e| Error::Storage {
            path: self.inner.config.path.clone(),
            op,
            source: Box::new(e),
        })
    }

    /// Customers with unsettled fees, and how much each owes.
    pub fn users_with_unsettled(&self) -> Vec<(Address, U256)> {
        let Ok(map) = self.inner.users.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = map
            .iter()
            .filter_map(|(a, s)| s.lock().ok().map(|s| (*a, s.unsettled())))
            .filter(|(_, u)| !u.is_zero())
            .collect();
        out.sort();
        out
    }

    /// A customer's session requests not in any open or finished settlement, oldest first.
    pub fn pending_session_requests(&self, user: Address) -> Result<Vec<PendingRequest>> {
        self.read("select pending requests", |c| {
            let mut st = c.prepare_cached(
                "SELECT id, request_hash, response_hash, prompt_tokens, completion_tokens, fee, created_ms
                 FROM requests WHERE user = ?1 AND kind = 0 AND settlement_id IS NULL ORDER BY id",
            )?;
            let rows = st.query_map(params![user.as_slice()], |r| {
                Ok(PendingRequest {
                    id: u64_of(r.get(0)?),
                    request_hash: blob_b256(&r.get::<_, Vec<u8>>(1)?),
                    response_hash: blob_b256(&r.get::<_, Vec<u8>>(2)?),
                    usage: Usage {
                        prompt_tokens: u64_of(r.get(3)?),
                        completion_tokens: u64_of(r.get(4)?),
                    },
                    fee: blob_u256(&r.get::<_, Vec<u8>>(5)?),
                    created_ms: u64_of(r.get(6)?),
                })
            })?;
            rows.collect()
        })
    }

    /// Settlements prepared or sent but not resolved (what a restart must reconcile).
    pub fn open_settlements(&self) -> Result<Vec<SettlementRecord>> {
        self.read("select open settlements", |c| {
            let mut st = c.prepare_cached(
                "SELECT id, mode, user, nonce, amount, requests_hash, signature, state, tx_hash
                 FROM settlements WHERE state IN (0, 1) ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(SettlementRecord {
                    id: u64_of(r.get(0)?),
                    mode: if r.get::<_, i64>(1)? == 0 {
                        SettlementMode::Tee
                    } else {
                        SettlementMode::Voucher
                    },
                    user: blob_addr(&r.get::<_, Vec<u8>>(2)?),
                    nonce: blob_u256(&r.get::<_, Vec<u8>>(3)?),
                    amount: blob_u256(&r.get::<_, Vec<u8>>(4)?),
                    requests_hash: blob_b256(&r.get::<_, Vec<u8>>(5)?),
                    signature: r.get(6)?,
                    state: SettlementState::from_code(r.get(7)?),
                    tx_hash: r.get::<_, Option<Vec<u8>>>(8)?.map(|b| blob_b256(&b)),
                })
            })?;
            rows.collect()
        })
    }

    /// `true` while a TEE settlement of this customer is prepared or sent.
    pub fn has_open_settlement(&self, user: Address) -> bool {
        self.user(user)
            .ok()
            .and_then(|u| u.lock().ok().map(|s| s.open_settlement))
            .unwrap_or(false)
    }

    /// The next TEE settlement nonce: above both the persistent counter and the on-chain nonce.
    /// Reserved only when [`Ledger::prepare_settlement`] commits.
    pub fn next_settlement_nonce(&self, chain_nonce: U256) -> U256 {
        let counter = self
            .inner
            .settlement_counter
            .lock()
            .map(|c| *c)
            .unwrap_or(U256::MAX);
        counter.max(chain_nonce).saturating_add(U256::from(1))
    }

    /// Durably stores a signed settlement (before it is sent) and assigns its requests to it.
    pub async fn prepare_settlement(
        &self,
        mut record: SettlementRecord,
        request_ids: Vec<u64>,
        now_ms: u64,
    ) -> Result<SettlementRecord> {
        record.id = self.inner.next_settlement.fetch_add(1, Ordering::Relaxed);
        record.state = SettlementState::Prepared;
        let rx = {
            let u = self.user(record.user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let mut counter = self
                .inner
                .settlement_counter
                .lock()
                .map_err(|_| self.poisoned_err())?;
            if record.mode == SettlementMode::Tee {
                if s.open_settlement {
                    return Err(Error::Config {
                        field: "settlement",
                        value: record.user.to_string(),
                        fix: "reconcile the open settlement of this customer first",
                    });
                }
                s.open_settlement = true;
                *counter = (*counter).max(record.nonce);
            }
            self.enqueue(vec![Op::PrepareSettlement {
                record: record.clone(),
                request_ids,
                counter: *counter,
                created_ms: now_ms,
            }])?
        };
        self.committed(rx).await?;
        Ok(record)
    }

    /// Records the transaction that carries these settlements.
    pub async fn mark_sent(&self, ids: &[u64], tx_hash: B256) -> Result<()> {
        let rx = self.enqueue(vec![Op::MarkSent {
            ids: ids.to_vec(),
            tx_hash,
        }])?;
        self.committed(rx).await
    }

    /// Resolves a TEE settlement: `paid = Some(amount)` when applied on chain (rows become settled,
    /// the cached balance drops by `amount`), `None` when rejected (rows are free again).
    ///
    /// A partial payment (`amount` below the settlement's total) frees its newest requests whose fees
    /// together fit in the unpaid part, so a later settlement claims them again; the customer never pays
    /// twice for a request, and the provider forgoes less than one request's fee.
    pub async fn finish_tee_settlement(&self, record: &SettlementRecord, paid: Option<U256>) -> Result<()> {
        let rx = {
            let u = self.user(record.user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let mut ops = Vec::new();
            let (state, paid) = match paid {
                Some(p) => {
                    let mut settled = record.amount;
                    if p < record.amount {
                        let (freed, freed_fees) =
                            self.unpaid_suffix(record, record.amount.saturating_sub(p))?;
                        settled = settled.saturating_sub(freed_fees);
                        if !freed.is_empty() {
                            tracing::warn!(user = %record.user, nonce = %record.nonce, %p, freed = freed.len(),
                                "partial TEE settlement: unpaid requests are pending again");
                            ops.push(Op::FreeRequests(freed));
                        }
                    }
                    s.session_unsettled = s.session_unsettled.saturating_sub(settled);
                    if let Some(c) = s.chain.as_mut() {
                        c.balance = c.balance.saturating_sub(p);
                        c.nonce = c.nonce.max(record.nonce);
                    }
                    (SettlementState::Done, p)
                }
                None => (SettlementState::Failed, U256::ZERO),
            };
            s.open_settlement = false;
            ops.insert(
                0,
                Op::FinishSettlement {
                    id: record.id,
                    state,
                    paid,
                },
            );
            self.enqueue(ops)?
        };
        self.committed(rx).await
    }

    /// The newest requests of a settlement whose fees together fit in `unpaid`, and their total.
    fn unpaid_suffix(&self, record: &SettlementRecord, unpaid: U256) -> Result<(Vec<u64>, U256)> {
        let rows: Vec<(u64, U256)> = self.read("select settlement rows", |c| {
            let mut st =
                c.prepare_cached("SELECT id, fee FROM requests WHERE settlement_id = ?1 ORDER BY id DESC")?;
            let rows = st.query_map(params![i64_of(record.id)], |r| {
                Ok((u64_of(r.get(0)?), blob_u256(&r.get::<_, Vec<u8>>(1)?)))
            })?;
            rows.collect()
        })?;
        let mut freed = Vec::new();
        let mut total = U256::ZERO;
        for (id, fee) in rows {
            match total.checked_add(fee) {
                Some(t) if t <= unpaid => {
                    total = t;
                    freed.push(id);
                }
                _ => break,
            }
        }
        Ok((freed, total))
    }

    /// Resolves a voucher settlement with the customer's on-chain paid total (from
    /// `voucher_state`); `record` may be `None` when reconciling without a local record.
    pub async fn finish_voucher_settlement(
        &self,
        user: Address,
        record: Option<&SettlementRecord>,
        paid_total: U256,
    ) -> Result<()> {
        let rx = {
            let u = self.user(user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let delta = paid_total.saturating_sub(s.voucher_paid);
            if paid_total > s.voucher_paid {
                s.voucher_paid = paid_total;
                if let Some(c) = s.chain.as_mut() {
                    c.balance = c.balance.saturating_sub(delta);
                }
            }
            let mut ops = vec![Op::User(s.row(user))];
            if let Some(r) = record {
                let applied = paid_total >= r.amount;
                ops.push(Op::FinishSettlement {
                    id: r.id,
                    state: if applied {
                        SettlementState::Done
                    } else {
                        SettlementState::Failed
                    },
                    paid: delta,
                });
            }
            self.enqueue(ops)?
        };
        self.committed(rx).await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Ok(mut h) = self.writer_thread.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Model check of the nonce window against a set of every nonce ever accepted: a nonce is
        /// accepted iff it was never accepted before and lies within `NONCE_WINDOW` of the highest one.
        #[test]
        fn nonce_window_matches_a_model(nonces in proptest::collection::vec(0u64..3000, 1..400)) {
            let user = Address::repeat_byte(1);
            let mut s = UserState::default();
            let mut seen = std::collections::HashSet::new();
            let mut high: Option<u64> = None;
            for x in nonces {
                let fresh = !seen.contains(&x);
                let in_window = high.is_none_or(|h| x + u64::from(NONCE_WINDOW) > h);
                let got = s.check_nonce(user, U256::from(x));
                proptest::prop_assert_eq!(got.is_ok(), fresh && in_window, "nonce {} high {:?}", x, high);
                if got.is_ok() {
                    s.record_nonce(U256::from(x));
                    seen.insert(x);
                    high = Some(high.map_or(x, |h| h.max(x)));
                }
            }
        }
    }

    #[test]
    fn nonce_window_accepts_reordering_and_rejects_replays_forever() {
        let user = Address::repeat_byte(1);
        let mut s = UserState::default();
        let n = |x: u64| U256::from(x);
        for x in [10, 12, 11, 5] {
            s.check_nonce(user, n(x)).unwrap();
            s.record_nonce(n(x));
        }
        for x in [10, 12, 11, 5] {
            assert!(matches!(
                s.check_nonce(user, n(x)),
                Err(Error::NonceReplayed { .. })
            ));
        }
        s.check_nonce(user, n(9)).unwrap();
        s.record_nonce(n(2000));
        assert!(matches!(
            s.check_nonce(user, n(12)),
            Err(Error::NonceTooOld { .. })
        ));
        assert!(matches!(
            s.check_nonce(user, n(976)),
            Err(Error::NonceTooOld { .. })
        ));
        s.check_nonce(user, n(977)).unwrap();
        assert!(matches!(
            s.check_nonce(user, n(2000)),
            Err(Error::NonceReplayed { .. })
        ));
        // Shift by less than the window keeps old bits at their new distance.
        s.record_nonce(n(1990));
        s.record_nonce(n(2010));
        assert!(matches!(
            s.check_nonce(user, n(1990)),
            Err(Error::NonceReplayed { .. })
        ));
        s.check_nonce(user, n(1991)).unwrap();
    }
}
