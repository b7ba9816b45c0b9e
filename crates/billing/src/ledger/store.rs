//! The ledger's durable form: the SQLite schema, the write operations the writer thread applies in one
//! transaction, and the load of every customer's state at open.
//!
//! Why SQLite over redb: settlement needs ad-hoc selections (a customer's unsettled rows, open
//! settlements, sums) that SQL states in one line; the file is inspectable with the `sqlite3` CLI
//! during incidents; WAL gives concurrent readers beside the single writer.

use std::collections::HashMap;
use std::path::Path;

use alloy_primitives::aliases::U1024;
use alloy_primitives::{Address, B256, U256};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::state::UserState;
use super::types::{
    Completion, PendingRequest, ReceiptRecord, RequestKind, SettlementMode, SettlementRecord, SettlementState,
};
use crate::meter::Usage;
use crate::native::{SignedVoucher, Voucher};
use crate::sig::parse_signature_bytes;

/// The durable part of a customer's [`UserState`].
#[derive(Debug)]
pub(super) struct UserRow {
    pub(super) user: Address,
    pub(super) nonce_high: Option<U256>,
    pub(super) window: U1024,
    pub(super) metered_native: U256,
    pub(super) voucher_paid: U256,
    pub(super) voucher: Option<SignedVoucher>,
}

/// A billed request.
#[derive(Debug)]
pub(super) struct RequestRow {
    pub(super) id: u64,
    pub(super) user: Address,
    pub(super) kind: RequestKind,
    pub(super) nonce: Option<U256>,
    pub(super) completion: Completion,
    pub(super) usage: Usage,
    pub(super) created_ms: u64,
}

/// One write. A job is a list of them, applied in order inside the batch's one transaction.
#[derive(Debug)]
pub(super) enum Op {
    User(UserRow),
    InsertRequest(Box<RequestRow>),
    InsertReceipt {
        record: ReceiptRecord,
        created_ms: u64,
    },
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

impl Op {
    /// The customer a `users` row belongs to: within one batch only the latest row of a customer is written.
    pub(super) fn user_row(&self) -> Option<Address> {
        match self {
            Op::User(u) => Some(u.user),
            _ => None,
        }
    }
}

pub(super) fn u256_blob(v: &U256) -> [u8; 32] {
    v.to_be_bytes::<32>()
}

pub(super) fn blob_u256(b: &[u8]) -> U256 {
    U256::try_from_be_slice(b).unwrap_or_default()
}

pub(super) fn blob_addr(b: &[u8]) -> Address {
    if b.len() == 20 {
        Address::from_slice(b)
    } else {
        Address::ZERO
    }
}

pub(super) fn blob_b256(b: &[u8]) -> B256 {
    if b.len() == 32 {
        B256::from_slice(b)
    } else {
        B256::ZERO
    }
}

pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn u64_of(v: i64) -> u64 {
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
  tx_hash BLOB, paid BLOB, created_ms INTEGER NOT NULL, from_block INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS settlements_open ON settlements(state);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS receipts(
  key TEXT PRIMARY KEY, text TEXT NOT NULL, native TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID;
";

/// Opens a connection with the ledger's settings.
pub(super) fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: in WAL mode every COMMIT fsyncs the WAL, so a committed row survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Checkpoints run on the background checkpointer, not inside a commit (see `writer::checkpointer_loop`);
    // after a checkpoint resets the WAL, it is truncated back to this size.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 16i64 << 20)?;
    Ok(conn)
}

/// Creates the tables (and adds columns that older files lack), then drops the reservations a crash left.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(SCHEMA)?;
    let has_from_block = conn
        .prepare("SELECT 1 FROM pragma_table_info('settlements') WHERE name = 'from_block'")?
        .exists([])?;
    if !has_from_block {
        conn.execute_batch("ALTER TABLE settlements ADD COLUMN from_block INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute("DELETE FROM reservations", [])
}

/// Applies one operation inside the batch's transaction.
pub(super) fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
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
        Op::InsertReceipt { record, created_ms } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO receipts(key, text, native, created_ms) VALUES (?1,?2,?3,?4)",
            )?
            .execute(params![
                record.key,
                record.text,
                record.native,
                i64_of(*created_ms)
            ])?;
        }
        Op::PrepareSettlement {
            record,
            request_ids,
            counter,
            created_ms,
        } => {
            tx.prepare_cached(
                "INSERT INTO settlements(id, mode, user, nonce, amount, requests_hash, signature, state, created_ms,
                 from_block) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
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
                i64_of(record.from_block),
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

/// Next ids and the persistent TEE settlement counter, as loaded at open.
#[derive(Debug)]
pub(super) struct Counters {
    pub(super) next_request: u64,
    pub(super) next_settlement: u64,
    pub(super) settlement_nonce: U256,
}

/// Loads every customer's durable state and the counters.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<(HashMap<Address, UserState>, Counters)> {
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
                    provider: Address::ZERO, // filled on read (`Ledger::latest_voucher`)
                    cumulativeAmount: blob_u256(&a),
                    nonce: blob_u256(&n),
                },
                // Rows written before vouchers were normalised at admission may hold a high-s form.
                signature: signature.normalized_s(),
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
    let mut st = conn.prepare("SELECT DISTINCT user FROM settlements WHERE mode = 0 AND state IN (0, 1)")?;
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
    Ok((
        states,
        Counters {
            next_request: u64_of(max_req.unwrap_or(0)).saturating_add(1),
            next_settlement: u64_of(max_set.unwrap_or(0)).saturating_add(1),
            settlement_nonce: counter.map(|c| blob_u256(&c)).unwrap_or_default(),
        },
    ))
}

// ---- reads (run on the reader thread, see `reader.rs`)

/// A customer's session requests not in any open or finished settlement, oldest first.
pub(super) fn pending_session_requests(
    c: &Connection,
    user: Address,
) -> rusqlite::Result<Vec<PendingRequest>> {
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
}

/// Settlements prepared or sent but not resolved.
pub(super) fn open_settlements(c: &Connection) -> rusqlite::Result<Vec<SettlementRecord>> {
    let mut st = c.prepare_cached(
        "SELECT id, mode, user, nonce, amount, requests_hash, signature, state, tx_hash, from_block
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
            from_block: u64_of(r.get(9)?),
        })
    })?;
    rows.collect()
}

/// The rows of a settlement, newest first, with their fees.
pub(super) fn settlement_rows(c: &Connection, settlement_id: u64) -> rusqlite::Result<Vec<(u64, U256)>> {
    let mut st =
        c.prepare_cached("SELECT id, fee FROM requests WHERE settlement_id = ?1 ORDER BY id DESC")?;
    let rows = st.query_map(params![i64_of(settlement_id)], |r| {
        Ok((u64_of(r.get(0)?), blob_u256(&r.get::<_, Vec<u8>>(1)?)))
    })?;
    rows.collect()
}

/// The receipts stored under `key`.
pub(super) fn receipt(c: &Connection, key: &str) -> rusqlite::Result<Option<ReceiptRecord>> {
    c.prepare_cached("SELECT text, native FROM receipts WHERE key = ?1")?
        .query_row(params![key], |r| {
            Ok(ReceiptRecord {
                key: key.to_owned(),
                text: r.get(0)?,
                native: r.get(1)?,
            })
        })
        .optional()
}

/// Number of stored receipts.
pub(super) fn receipt_count(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get::<_, i64>(0))
        .map(u64_of)
}
