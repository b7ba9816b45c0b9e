//! The durable task store: SQLite (WAL, `synchronous=FULL`) behind one writer thread that commits queued
//! writes together (group commit: 100 concurrent admissions cost a handful of fsyncs, not 100), plus a
//! reader connection. Every state transition is a conditional update (`WHERE state = from`) in the same
//! transaction as its log line, so two actors (the driver and a cancel) can never both win.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, mpsc};

use alloy_primitives::{Address, U256};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::state::{TaskId, TaskState};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  fail_reason TEXT,
  model TEXT NOT NULL,
  model_hash TEXT NOT NULL,
  dataset_hash TEXT NOT NULL,
  training_params TEXT NOT NULL,
  nonce TEXT NOT NULL,
  signature TEXT NOT NULL,
  user_pubkey BLOB NOT NULL,
  wait INTEGER NOT NULL,
  native INTEGER NOT NULL,
  max_fee TEXT,
  tokens INTEGER,
  epochs INTEGER,
  price TEXT,
  fee TEXT,
  progress REAL NOT NULL DEFAULT 0,
  storage_root TEXT,
  model_root_hash TEXT,
  sealed_len INTEGER,
  sealed_path TEXT,
  encrypted_secret BLOB,
  deliver_sending INTEGER NOT NULL DEFAULT 0,
  deliver_tx TEXT,
  delivered_at INTEGER,
  settle_nonce TEXT,
  settle_ack INTEGER,
  settle_signature BLOB,
  settle_tx TEXT,
  settled_at INTEGER,
  charged TEXT,
  UNIQUE (user, nonce)
);
CREATE INDEX IF NOT EXISTS tasks_user ON tasks (user, created_at);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state);
CREATE TABLE IF NOT EXISTS task_log (
  task_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  line TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS datasets (
  user TEXT NOT NULL,
  hash TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user, hash)
);
"#;

/// Most log lines kept per task; later lines are dropped with one notice.
pub const MAX_LOG_LINES: u64 = 20_000;

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Id.
    pub id: TaskId,
    /// Customer.
    pub user: Address,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// State.
    pub state: TaskState,
    /// `code: detail` when Failed.
    pub fail_reason: Option<String>,
    /// Model name.
    pub model: String,
    /// Model hash as 0G names it (`preTrainedModelHash`).
    pub model_hash: String,
    /// Dataset hash/root as given.
    pub dataset_hash: String,
    /// Config text verbatim.
    pub training_params: String,
    /// Create nonce.
    pub nonce: U256,
    /// Create signature (0x hex).
    pub signature: String,
    /// The customer's uncompressed public key (ECIES recipient).
    pub user_pubkey: Vec<u8>,
    /// 0G's `wait` flag.
    pub wait: bool,
    /// Created through the native API (signature binds model, params and `max_fee`).
    pub native: bool,
    /// The most the customer signed to pay (native only).
    pub max_fee: Option<U256>,
    /// Dataset tokens.
    pub tokens: Option<u64>,
    /// Epochs.
    pub epochs: Option<u32>,
    /// Price per token.
    pub price: Option<U256>,
    /// Fee = tokens × epochs × price.
    pub fee: Option<U256>,
    /// Training progress in [0, 1].
    pub progress: f64,
    /// Storage root of the sealed model.
    pub storage_root: Option<String>,
    /// `modelRootHash` recorded on chain (keccak256 of the sealed file, 0x hex).
    pub model_root_hash: Option<String>,
    /// Sealed size.
    pub sealed_len: Option<u64>,
    /// The TEE copy of the sealed model.
    pub sealed_path: Option<String>,
    /// The model key, ECIES-wrapped for the customer (revealed only by an acknowledged settlement).
    pub encrypted_secret: Option<Vec<u8>>,
    /// `addDeliverable` may have been sent (cancel is refused from here on).
    pub deliver_sending: bool,
    /// `addDeliverable` transaction.
    pub deliver_tx: Option<String>,
    /// When the deliverable was confirmed on chain (ms): the acknowledgement timeout counts from here.
    pub delivered_at: Option<i64>,
    /// Settlement nonce prepared.
    pub settle_nonce: Option<U256>,
    /// Whether the prepared settlement reveals the key.
    pub settle_ack: Option<bool>,
    /// Prepared settlement signature.
    pub settle_signature: Option<Vec<u8>>,
    /// Settlement transaction.
    pub settle_tx: Option<String>,
    /// Settlement confirmed (ms).
    pub settled_at: Option<i64>,
    /// What the settlement charged.
    pub charged: Option<U256>,
}

/// What a new task starts with.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Id.
    pub id: TaskId,
    /// Customer.
    pub user: Address,
    /// Model name.
    pub model: String,
    /// Model hash.
    pub model_hash: String,
    /// Dataset hash.
    pub dataset_hash: String,
    /// Config text.
    pub training_params: String,
    /// Nonce.
    pub nonce: U256,
    /// Signature hex.
    pub signature: String,
    /// Public key.
    pub user_pubkey: Vec<u8>,
    /// `wait`.
    pub wait: bool,
    /// Native.
    pub native: bool,
    /// Native max fee.
    pub max_fee: Option<U256>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Sequence number within the task (1, 2, …).
    pub seq: u64,
    /// Time (ms).
    pub at: i64,
    /// `state`, `log`, `metric` or `error`.
    pub kind: String,
    /// Text.
    pub line: String,
}

/// Column updates applied with a transition.
#[derive(Debug, Clone, Default)]
pub struct Update(Vec<(&'static str, Value)>);

impl Update {
    /// No column changes.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a text column.
    pub fn text(mut self, col: &'static str, v: impl Into<String>) -> Self {
        self.0.push((col, Value::Text(v.into())));
        self
    }
    /// Sets an integer column.
    pub fn int(mut self, col: &'static str, v: i64) -> Self {
        self.0.push((col, Value::Integer(v)));
        self
    }
    /// Sets a real column.
    pub fn real(mut self, col: &'static str, v: f64) -> Self {
        self.0.push((col, Value::Real(v)));
        self
    }
    /// Sets a blob column.
    pub fn blob(mut self, col: &'static str, v: Vec<u8>) -> Self {
        self.0.push((col, Value::Blob(v)));
        self
    }
    /// Sets a column to NULL.
    pub fn null(mut self, col: &'static str) -> Self {
        self.0.push((col, Value::Null));
        self
    }
    /// Sets a U256 column (decimal text).
    pub fn u256(self, col: &'static str, v: U256) -> Self {
        self.text(col, v.to_string())
    }
}

type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Op = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// The task store. Cheap to clone.
#[derive(Clone)]
pub struct TaskStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    reader: Mutex<Connection>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 512 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(ops.len());
        let begin = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = begin {
            for op in ops {
                let (_, reply) = op(&conn);
                replies.push(reply);
            }
            let msg = e.to_string();
            replies.into_iter().for_each(|r| r(Err(msg.clone())));
            continue;
        }
        for op in ops {
            let _ = conn.execute_batch("SAVEPOINT op");
            let (ok, reply) = op(&conn);
            if ok {
                let _ = conn.execute_batch("RELEASE op");
            } else {
                let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            }
            replies.push(reply);
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for r in replies {
            r(commit.clone());
        }
    }
}

fn col_u256(s: Option<String>) -> Option<U256> {
    s.and_then(|s| U256::from_str(&s).ok())
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let conv = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let id: String = row.get("id")?;
    let user: String = row.get("user")?;
    let state: String = row.get("state")?;
    let nonce: String = row.get("nonce")?;
    Ok(TaskRecord {
        id: TaskId::parse(&id).map_err(|e| conv(0, e.to_string()))?,
        user: user.parse().map_err(|_| conv(1, format!("bad address {user}")))?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        state: state.parse().map_err(|e: Error| conv(4, e.to_string()))?,
        fail_reason: row.get("fail_reason")?,
        model: row.get("model")?,
        model_hash: row.get("model_hash")?,
        dataset_hash: row.get("dataset_hash")?,
        training_params: row.get("training_params")?,
        nonce: U256::from_str(&nonce).map_err(|e| conv(10, e.to_string()))?,
        signature: row.get("signature")?,
        user_pubkey: row.get("user_pubkey")?,
        wait: row.get("wait")?,
        native: row.get("native")?,
        max_fee: col_u256(row.get("max_fee")?),
        tokens: row.get::<_, Option<i64>>("tokens")?.map(|t| t.max(0) as u64),
        epochs: row
            .get::<_, Option<i64>>("epochs")?
            .map(|t| u32::try_from(t).unwrap_or(0)),
        price: col_u256(row.get("price")?),
        fee: col_u256(row.get("fee")?),
        progress: row.get("progress")?,
        storage_root: row.get("storage_root")?,
        model_root_hash: row.get("model_root_hash")?,
        sealed_len: row.get::<_, Option<i64>>("sealed_len")?.map(|t| t.max(0) as u64),
        sealed_path: row.get("sealed_path")?,
        encrypted_secret: row.get("encrypted_secret")?,
        deliver_sending: row.get("deliver_sending")?,
        deliver_tx: row.get("deliver_tx")?,
        delivered_at: row.get("delivered_at")?,
        settle_nonce: col_u256(row.get("settle_nonce")?),
        settle_ack: row.get("settle_ack")?,
        settle_signature: row.get("settle_signature")?,
        settle_tx: row.get("settle_tx")?,
        settled_at: row.get("settled_at")?,
        charged: col_u256(row.get("charged")?),
    })
}

fn user_key(a: Address) -> String {
    format!("{a:#x}")
}

fn next_seq(conn: &Connection, id: &str) -> rusqlite::Result<u64> {
    let s: Option<i64> = conn.query_row("SELECT MAX(seq) FROM task_log WHERE task_id = ?1", [id], |r| {
        r.get(0)
    })?;
    Ok(s.unwrap_or(0).max(0) as u64 + 1)
}

fn insert_log(
    conn: &Connection,
    id: &str,
    seq: u64,
    at: i64,
    kind: &str,
    line: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO task_log (task_id, seq, at, kind, line) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, seq as i64, at, kind, line],
    )?;
    Ok(())
}

impl TaskStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let w = open_conn(&path).map_err(|e| Error::store("open", e))?;
        w.execute_batch(SCHEMA).map_err(|e| Error::store("schema", e))?;
        let r = open_conn(&path).map_err(|e| Error::store("open", e))?;
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("zg-finetune-store".into())
            .spawn(move || writer_loop(w, rx))
            .map_err(|e| Error::store("spawn writer", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                reader: Mutex::new(r),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Stops the writer after the queued writes (later writes fail).
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// Runs `f` in the writer's next group transaction and returns its result once committed.
    pub async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let boxed: Op = Box::new(move |conn| {
            let res = f(conn);
            let ok = res.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let out = match (res, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(c)) => Err(Error::Store { op, reason: c }),
                };
                let _ = tx.send(out);
            });
            (ok, reply)
        });
        let sender = self
            .inner
            .writer
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or_else(|| Error::store(op, "the store is closed"))?;
        sender
            .send(boxed)
            .map_err(|_| Error::store(op, "the writer thread stopped"))?;
        rx.await
            .map_err(|_| Error::store(op, "the writer thread stopped"))?
    }

    /// Runs a read on the reader connection (blocking: call from a blocking context or via [`Self::read`]).
    pub fn read_blocking<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self
            .inner
            .reader
            .lock()
            .map_err(|_| Error::store(op, "poisoned"))?;
        f(&conn).map_err(|e| Error::store(op, e))
    }

    /// Runs a read on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_blocking(op, f))
            .await
            .map_err(|e| Error::store(op, e))?
    }

    /// Inserts a new task in `Init` with its first log line. A reused `(user, nonce)` is
    /// [`Error::NonceReplayed`].
    pub async fn insert(&self, t: NewTask) -> Result<TaskRecord> {
        let id = t.id.clone();
        self.write("insert task", move |c| {
            let now = now_ms();
            let user = user_key(t.user);
            let dup: bool = c
                .query_row(
                    "SELECT 1 FROM tasks WHERE user = ?1 AND nonce = ?2",
                    params![user, t.nonce.to_string()],
                    |_| Ok(true),
                )
                .optional()
                .map_err(|e| Error::store("insert task", e))?
                .unwrap_or(false);
            if dup {
                return Err(Error::NonceReplayed {
                    user: t.user,
                    nonce: t.nonce,
                });
            }
            c.execute(
                "INSERT INTO tasks (id, user, created_at, updated_at, state, model, model_hash, dataset_hash,
                   training_params, nonce, signature, user_pubkey, wait, native, max_fee)
                 VALUES (?1, ?2, ?3, ?3, 'Init', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    t.id.as_str(),
                    user,
                    now,
                    t.model,
                    t.model_hash,
                    t.dataset_hash,
                    t.training_params,
                    t.nonce.to_string(),
                    t.signature,
                    t.user_pubkey,
                    t.wait,
                    t.native,
                    t.max_fee.map(|m| m.to_string()),
                ],
            )
            .map_err(|e| Error::store("insert task", e))?;
            insert_log(c, t.id.as_str(), 1, now, "state", "Init: task accepted")
                .map_err(|e| Error::store("insert task", e))?;
            Ok(())
        })
        .await?;
        self.get(&id)
            .await?
            .ok_or_else(|| Error::store("insert task", "vanished"))
    }

    /// Moves a task `from → to` if it is still in `from`, applying `update` and appending a `state` log line,
    /// all in one transaction. Returns `false` (changing nothing) when the task is no longer in `from`.
    pub async fn transition(
        &self,
        id: &TaskId,
        from: TaskState,
        to: TaskState,
        update: Update,
        note: String,
    ) -> Result<bool> {
        self.transition_if(id, from, to, update, note, "1 = 1").await
    }

    /// [`TaskStore::transition`] with an extra SQL condition on the row (e.g. `deliver_sending = 0`).
    pub async fn transition_if(
        &self,
        id: &TaskId,
        from: TaskState,
        to: TaskState,
        update: Update,
        note: String,
        condition: &'static str,
    ) -> Result<bool> {
        if from != to && !from.can_move_to(to) {
            return Err(Error::store(
                "transition",
                format!("{from} → {to} is not a transition of the lifecycle"),
            ));
        }
        let id = id.as_str().to_owned();
        self.write("transition", move |c| {
            let now = now_ms();
            let mut sql = String::from("UPDATE tasks SET state = ?1, updated_at = ?2");
            let mut vals: Vec<Value> = vec![Value::Text(to.as_str().into()), Value::Integer(now)];
            for (col, v) in update.0 {
                vals.push(v);
                sql.push_str(&format!(", {col} = ?{}", vals.len()));
            }
            vals.push(Value::Text(id.clone()));
            let id_pos = vals.len();
            vals.push(Value::Text(from.as_str().into()));
            sql.push_str(&format!(
                " WHERE id = ?{id_pos} AND state = ?{} AND ({condition})",
                vals.len()
            ));
            let n = c
                .execute(&sql, rusqlite::params_from_iter(vals))
                .map_err(|e| Error::store("transition", e))?;
            if n == 0 {
                return Ok(false);
            }
            if from != to || !note.is_empty() {
                let seq = next_seq(c, &id).map_err(|e| Error::store("transition", e))?;
                let line = if from == to {
                    note
                } else if note.is_empty() {
                    to.as_str().to_owned()
                } else {
                    format!("{to}: {note}")
                };
                let kind = if from == to { "log" } else { "state" };
                insert_log(c, &id, seq, now, kind, &line).map_err(|e| Error::store("transition", e))?;
            }
            Ok(true)
        })
        .await
    }

    /// Updates columns of a task that is still in `state` (no transition). Returns whether it was.
    pub async fn update(&self, id: &TaskId, state: TaskState, update: Update) -> Result<bool> {
        self.transition(id, state, state, update, String::new()).await
    }

    /// Appends log lines (kind, text); returns the sequence number of the last one. Beyond
    /// [`MAX_LOG_LINES`] lines are dropped after one notice.
    pub async fn append_log(&self, id: &TaskId, lines: Vec<(&'static str, String)>) -> Result<u64> {
        let id = id.as_str().to_owned();
        self.write("append log", move |c| {
            let now = now_ms();
            let mut seq = next_seq(c, &id).map_err(|e| Error::store("append log", e))?;
            for (kind, line) in lines {
                if seq > MAX_LOG_LINES + 1 {
                    break;
                }
                let (kind, line) = if seq == MAX_LOG_LINES + 1 {
                    ("log", format!("(log truncated at {MAX_LOG_LINES} lines)"))
                } else {
                    (kind, line)
                };
                insert_log(c, &id, seq, now, kind, &line).map_err(|e| Error::store("append log", e))?;
                seq += 1;
            }
            Ok(seq - 1)
        })
        .await
    }

    /// One task.
    pub async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        let id = id.as_str().to_owned();
        self.read("get task", move |c| {
            c.query_row("SELECT * FROM tasks WHERE id = ?1", [id], record)
                .optional()
        })
        .await
    }

    /// One task of `user` ([`Error::TaskNotFound`] when absent or someone else's).
    pub async fn get_for(&self, user: Address, id: &TaskId) -> Result<TaskRecord> {
        match self.get(id).await? {
            Some(t) if t.user == user => Ok(t),
            _ => Err(Error::TaskNotFound { id: id.to_string() }),
        }
    }

    /// `user`'s tasks, newest first (at most `limit`).
    pub async fn list(&self, user: Address, limit: u32) -> Result<Vec<TaskRecord>> {
        let user = user_key(user);
        self.read("list tasks", move |c| {
            let mut st = c.prepare_cached(
                "SELECT * FROM tasks WHERE user = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![user, limit], record)?;
            rows.collect()
        })
        .await
    }

    /// Every task not in a terminal state, oldest first.
    pub async fn open_tasks(&self) -> Result<Vec<TaskRecord>> {
        self.read("open tasks", |c| {
            let mut st = c.prepare_cached(
                "SELECT * FROM tasks WHERE state NOT IN ('Finished','Cancelled','Failed','PenaltySettled')
                 ORDER BY created_at, rowid",
            )?;
            let rows = st.query_map([], record)?;
            rows.collect()
        })
        .await
    }

    /// Log lines of a task after `after` (exclusive).
    pub async fn log_since(&self, id: &TaskId, after: u64) -> Result<Vec<LogLine>> {
        let id = id.as_str().to_owned();
        self.read("read log", move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, at, kind, line FROM task_log WHERE task_id = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let rows = st.query_map(params![id, after as i64], |r| {
                Ok(LogLine {
                    seq: r.get::<_, i64>(0)?.max(0) as u64,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    line: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Number of tasks per state.
    pub async fn counts(&self) -> Result<Vec<(TaskState, u64)>> {
        self.read("count tasks", |c| {
            let mut st = c.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row?;
                if let Ok(s) = s.parse() {
                    out.push((s, n.max(0) as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    /// A customer's tasks still holding a claim on the sub-account (not terminal): count and the sum of
    /// their known fees.
    pub async fn in_flight(&self, user: Address) -> Result<(u64, U256)> {
        let user = user_key(user);
        self.read("in flight", move |c| {
            let mut st = c.prepare_cached(
                "SELECT fee FROM tasks WHERE user = ?1 AND state NOT IN ('Finished','Cancelled','Failed','PenaltySettled')",
            )?;
            let rows = st.query_map([user], |r| r.get::<_, Option<String>>(0))?;
            let (mut n, mut sum) = (0u64, U256::ZERO);
            for f in rows {
                n += 1;
                sum = sum.saturating_add(col_u256(f?).unwrap_or_default());
            }
            Ok((n, sum))
        })
        .await
    }

    /// Records a dataset uploaded to the TEE by `user`.
    pub async fn put_dataset(&self, user: Address, hash: String, path: PathBuf, size: u64) -> Result<()> {
        let user = user_key(user);
        self.write("put dataset", move |c| {
            c.execute(
                "INSERT OR REPLACE INTO datasets (user, hash, path, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user, hash, path.display().to_string(), size as i64, now_ms()],
            )
            .map_err(|e| Error::store("put dataset", e))?;
            Ok(())
        })
        .await
    }

    /// The path of a dataset `user` uploaded to the TEE (someone else's upload is invisible).
    pub async fn dataset(&self, user: Address, hash: &str) -> Result<Option<PathBuf>> {
        let (user, hash) = (user_key(user), hash.to_ascii_lowercase());
        self.read("get dataset", move |c| {
            c.query_row(
                "SELECT path FROM datasets WHERE user = ?1 AND hash = ?2",
                params![user, hash],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|p| p.map(PathBuf::from))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(user: Address, nonce: u64) -> NewTask {
        NewTask {
            id: TaskId::random(),
            user,
            model: "m".into(),
            model_hash: "0x01".into(),
            dataset_hash: "0x02".into(),
            training_params: "{}".into(),
            nonce: U256::from(nonce),
            signature: "0x".into(),
            user_pubkey: vec![4; 65],
            wait: false,
            native: false,
            max_fee: None,
        }
    }

    #[tokio::test]
    async fn transitions_are_conditional_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let s = TaskStore::open(dir.path().join("t.sqlite")).unwrap();
        let u = Address::repeat_byte(1);
        let t = s.insert(task(u, 7)).await.unwrap();
        assert_eq!(t.state, TaskState::Init);
        assert!(matches!(
            s.insert(task(u, 7)).await,
            Err(Error::NonceReplayed { .. })
        ));
        s.insert(task(Address::repeat_byte(2), 7)).await.unwrap();
        assert!(
            s.transition(
                &t.id,
                TaskState::Init,
                TaskState::SettingUp,
                Update::new().u256("fee", U256::from(9)),
                "x".into()
            )
            .await
            .unwrap()
        );
        // A second actor loses.
        assert!(
            !s.transition(
                &t.id,
                TaskState::Init,
                TaskState::Cancelled,
                Update::new(),
                String::new()
            )
            .await
            .unwrap()
        );
        assert!(
            s.transition(
                &t.id,
                TaskState::Init,
                TaskState::Finished,
                Update::new(),
                String::new()
            )
            .await
            .is_err()
        );
        let t = s.get(&t.id).await.unwrap().unwrap();
        assert_eq!((t.state, t.fee), (TaskState::SettingUp, Some(U256::from(9))));
        s.append_log(&t.id, vec![("log", "hello".into())]).await.unwrap();
        let log = s.log_since(&t.id, 0).await.unwrap();
        let lines: Vec<&str> = log.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["Init: task accepted", "SettingUp: x", "hello"]);
        assert_eq!(s.log_since(&t.id, 2).await.unwrap().len(), 1);
        assert_eq!(s.in_flight(u).await.unwrap(), (1, U256::from(9)));
        assert!(matches!(
            s.get_for(Address::repeat_byte(2), &t.id).await,
            Err(Error::TaskNotFound { .. })
        ));
        // Reopening sees everything.
        s.close();
        let s = TaskStore::open(dir.path().join("t.sqlite")).unwrap();
        assert_eq!(s.list(u, 10).await.unwrap().len(), 1);
        assert_eq!(s.open_tasks().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn concurrent_writes_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = TaskStore::open(dir.path().join("t.sqlite")).unwrap();
        let mut hs = Vec::new();
        for i in 0..100u64 {
            let s = s.clone();
            hs.push(tokio::spawn(async move {
                s.insert(task(Address::repeat_byte((i % 20) as u8), i)).await
            }));
        }
        for h in hs {
            h.await.unwrap().unwrap();
        }
        assert_eq!(s.open_tasks().await.unwrap().len(), 100);
    }
}
