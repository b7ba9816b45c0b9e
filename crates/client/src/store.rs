//! The client's durable state per (customer, provider): the last nonce used, the cumulative amount owed
//! (sum of verified receipts), the highest voucher ever signed, and the provider's verified keys.
//!
//! One small JSON file per pair, rewritten atomically (temp file, fsync, rename, fsync of the directory)
//! under an exclusive OS file lock, so `zg serve` and `zg inference chat` can share a data dir without racing
//! on nonces, and a crash never loses a signed voucher amount. Verified receipts are appended to a JSON-lines
//! log beside it (an audit trail; the state file alone drives signing).
//!
//! The lock may be held by another process and each write costs two fsyncs, so every async method runs its
//! file work on tokio's blocking pool (`spawn_blocking`): a waiting request never stalls the runtime that
//! serves the others. A write that was started finishes even if its caller goes away (nonces and amounts
//! only grow, so a finished write is never wrong).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::receipt::{ReceiptJson, VerifiedReceipt};

/// A provider's keys as last verified by attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedKeys {
    /// The settlement signer bound in the quote (equals the on-chain `teeSignerAddress`).
    pub signer: Address,
    /// `0x`-hex ed25519 key that signs native receipts, bound in the quote.
    pub response_key: String,
    /// Whether the evidence came from the simulated backend.
    pub simulated: bool,
    /// Unix seconds of the verification.
    pub verified_at: u64,
    /// The service URL at verification time.
    pub url: String,
}

/// What the client remembers about one provider. Amounts are neuron.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderState {
    /// The last request nonce used (never reused; the next one is larger).
    pub last_nonce: U256,
    /// Cumulative fees of verified receipts: what the customer owes this provider in total.
    pub owed: U256,
    /// The largest cumulative amount ever signed in a voucher (never signed lower again).
    pub vouched: U256,
    /// The nonce of that voucher.
    pub voucher_nonce: U256,
    /// Verified receipts counted into `owed`.
    pub receipts: u64,
    /// The provider's attested keys.
    pub verified: Option<VerifiedKeys>,
}

/// One verified receipt, as appended to the audit log (amounts as decimal strings).
#[derive(Debug, Clone, Serialize)]
struct LoggedReceipt {
    at_ms: u64,
    key: String,
    #[serde(serialize_with = "crate::dec::ser_dec")]
    nonce: U256,
    #[serde(serialize_with = "crate::dec::ser_dec")]
    fee: U256,
    prompt_tokens: u64,
    completion_tokens: u64,
    request_hash: String,
    response_hash: String,
    #[serde(serialize_with = "crate::dec::ser_dec")]
    owed_after: U256,
}

/// The state files of one customer in one data dir.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
    /// In-process serialisation per provider (the OS lock serialises processes).
    locks: Arc<Mutex<HashMap<Address, Arc<Mutex<()>>>>>,
}

impl Store {
    /// Opens (creating) `<data_dir>/<customer>/`.
    pub(crate) fn open(data_dir: &Path, customer: Address) -> Result<Self> {
        let dir = data_dir.join(format!("{customer:#x}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::store("create", &dir, e))?;
        Ok(Self {
            dir,
            locks: Arc::default(),
        })
    }

    fn state_path(&self, provider: Address) -> PathBuf {
        self.dir.join(format!("{provider:#x}.json"))
    }

    /// The receipt log of a provider.
    fn log_path(&self, provider: Address) -> PathBuf {
        self.dir.join(format!("{provider:#x}.receipts.jsonl"))
    }

    fn local_lock(&self, provider: Address) -> Arc<Mutex<()>> {
        let mut m = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(m.entry(provider).or_default())
    }

    /// Runs `f` (file work under the locks) on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::store("run the state update for", &self.dir, e))?
    }

    /// Reads the state (default when none yet).
    pub(crate) async fn load(&self, provider: Address) -> Result<ProviderState> {
        self.blocking(move |s| s.load_blocking(provider)).await
    }

    /// Read-modify-write under both locks; the new state is durable before this returns.
    pub(crate) async fn update<T: Send + 'static>(
        &self,
        provider: Address,
        f: impl FnOnce(&mut ProviderState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.blocking(move |s| s.update_blocking(provider, f)).await
    }

    /// Counts a verified receipt into the amount owed (durably), appends it to the audit log, and returns
    /// it as a [`VerifiedReceipt`].
    pub(crate) async fn record(
        &self,
        provider: Address,
        r: ReceiptJson,
        fee: U256,
        nonce: U256,
    ) -> Result<VerifiedReceipt> {
        self.blocking(move |s| {
            let owed_after = s.update_blocking(provider, move |st| {
                st.owed = st.owed.saturating_add(fee);
                st.receipts = st.receipts.saturating_add(1);
                Ok(st.owed)
            })?;
            let logged = LoggedReceipt {
                at_ms: now_ms(),
                key: r.key.clone(),
                nonce,
                fee,
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                request_hash: r.request_hash.to_string(),
                response_hash: r.response_hash.to_string(),
                owed_after,
            };
            if let Err(e) = s.log(provider, &logged) {
                tracing::warn!(error = %e, "could not append to the receipt log (the amount owed is recorded)");
            }
            Ok(VerifiedReceipt {
                receipt: r,
                fee,
                owed_after,
            })
        })
        .await
    }

    fn load_blocking(&self, provider: Address) -> Result<ProviderState> {
        let local = self.local_lock(provider);
        let _g = local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _file_lock = self.file_lock(provider)?;
        self.read(provider)
    }

    fn read(&self, provider: Address) -> Result<ProviderState> {
        let path = self.state_path(provider);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::store("parse (a corrupt state file must be repaired, not deleted: it holds nonces and vouchers)", &path, e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProviderState::default()),
            Err(e) => Err(Error::store("read", &path, e)),
        }
    }

    fn file_lock(&self, provider: Address) -> Result<File> {
        let path = self.dir.join(format!("{provider:#x}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::store("open lock", &path, e))?;
        // Exclusive advisory lock, released when `f` is dropped. Another process may hold it, so this runs
        // on the blocking pool only (see the module docs).
        f.lock().map_err(|e| Error::store("lock", &path, e))?;
        Ok(f)
    }

    fn update_blocking<T>(
        &self,
        provider: Address,
        f: impl FnOnce(&mut ProviderState) -> Result<T>,
    ) -> Result<T> {
        let local = self.local_lock(provider);
        let _g = local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _file_lock = self.file_lock(provider)?;
        let mut state = self.read(provider)?;
        let before = state.clone();
        let out = f(&mut state)?;
        if state.vouched < before.vouched || state.last_nonce < before.last_nonce || state.owed < before.owed
        {
            // Amounts and nonces only grow: a bug here would sign a regressing voucher or reuse a nonce.
            return Err(Error::store(
                "refuse regressing write to",
                &self.state_path(provider),
                "amounts and nonces only grow",
            ));
        }
        if state != before {
            self.write(provider, &state)?;
        }
        Ok(out)
    }

    fn write(&self, provider: Address, state: &ProviderState) -> Result<()> {
        let path = self.state_path(provider);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::store("encode", &path, e))?;
        let mut f = File::create(&tmp).map_err(|e| Error::store("create", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::store("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::store("fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| Error::store("rename", &path, e))?;
        if let Ok(d) = File::open(&self.dir) {
            // Makes the rename itself durable; best effort on platforms that cannot fsync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Appends a verified receipt to the audit log.
    fn log(&self, provider: Address, r: &LoggedReceipt) -> Result<()> {
        let path = self.log_path(provider);
        let mut line = serde_json::to_vec(r).map_err(|e| Error::store("encode", &path, e))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::store("open", &path, e))?;
        f.write_all(&line).map_err(|e| Error::store("append", &path, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_survives_reopen_and_never_regresses() {
        let dir = tempfile::tempdir().unwrap();
        let (me, p) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let s = Store::open(dir.path(), me).unwrap();
        assert_eq!(s.load_blocking(p).unwrap(), ProviderState::default());
        s.update_blocking(p, |st| {
            st.last_nonce = U256::from(7);
            st.owed = U256::from(100);
            st.vouched = U256::from(90);
            Ok(())
        })
        .unwrap();
        let s2 = Store::open(dir.path(), me).unwrap();
        let st = s2.load_blocking(p).unwrap();
        assert_eq!(
            (st.last_nonce, st.owed, st.vouched),
            (U256::from(7), U256::from(100), U256::from(90))
        );
        // A regressing write is refused and leaves the file as it was.
        let e = s2.update_blocking(p, |st| {
            st.vouched = U256::from(10);
            Ok(())
        });
        assert!(matches!(e, Err(Error::Store { .. })), "{e:?}");
        assert_eq!(s2.load_blocking(p).unwrap().vouched, U256::from(90));
    }

    #[test]
    fn concurrent_updates_never_share_a_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let (me, p) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let s = Store::open(dir.path(), me).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = Store::open(dir.path(), me).unwrap(); // separate handles: the file lock serialises them
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| {
                            s.update_blocking(p, |st| {
                                st.last_nonce += U256::from(1);
                                Ok(st.last_nonce)
                            })
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<U256> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert_eq!(s.load_blocking(p).unwrap().last_nonce, U256::from(200));
    }
}
