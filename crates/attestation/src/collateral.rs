//! DCAP collateral (TCB info, QE identity, CRLs and their issuer chains) and where it comes from.
//!
//! Collateral is fetched apart from verification and passed in, so the verify path does no I/O.
//! Sources: a directory/file cache (always), an in-memory cache keyed by FMSPC with expiry
//! (always), and Intel PCS / PCCS over HTTP (feature `pccs`).

use crate::{Error, Result, TdQuote, Timestamp};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// DCAP collateral for one platform (FMSPC), in dcap-qvl's `QuoteCollateralV3` JSON shape
/// (`tcb_info`, `tcb_info_signature`, `qe_identity`, `root_ca_crl`, `pck_crl`, issuer chains; the
/// optional `pck_certificate_chain` overrides the quote's own chain).
#[derive(Clone)]
pub struct Collateral {
    pub(crate) inner: dcap_qvl::QuoteCollateralV3,
    digest: [u8; 32],
    fmspc: String,
    tcb_evaluation_data_number: u32,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl std::fmt::Debug for Collateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collateral")
            .field("fmspc", &self.fmspc)
            .field("tcb_evaluation_data_number", &self.tcb_evaluation_data_number)
            .field("not_before", &self.not_before.to_string())
            .field("not_after", &self.not_after.to_string())
            .field("digest", &hex::encode(self.digest))
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatedJson {
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
    #[serde(default)]
    tcb_evaluation_data_number: u32,
}

impl Collateral {
    /// Parses collateral JSON (dcap-qvl `QuoteCollateralV3` format, as stored under testdata and
    /// as written by [`Collateral::to_json`]).
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: dcap_qvl::QuoteCollateralV3 =
            serde_json::from_str(json).map_err(|e| Error::MalformedCollateral {
                field: "document",
                reason: e.to_string(),
            })?;
        Self::from_inner(inner)
    }

    /// Reads collateral JSON from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read collateral", path, e))?;
        Self::from_json(&text)
    }

    pub(crate) fn from_inner(inner: dcap_qvl::QuoteCollateralV3) -> Result<Self> {
        let tcb: DatedJson =
            serde_json::from_str(&inner.tcb_info).map_err(|e| Error::MalformedCollateral {
                field: "tcb_info",
                reason: e.to_string(),
            })?;
        let qe: DatedJson =
            serde_json::from_str(&inner.qe_identity).map_err(|e| Error::MalformedCollateral {
                field: "qe_identity",
                reason: e.to_string(),
            })?;
        let date = |field: &'static str, s: &str| {
            Timestamp::from_rfc3339(s).map_err(|e| Error::MalformedCollateral {
                field,
                reason: e.to_string(),
            })
        };
        let not_before =
            date("tcb_info.issueDate", &tcb.issue_date)?.max(date("qe_identity.issueDate", &qe.issue_date)?);
        let not_after = date("tcb_info.nextUpdate", &tcb.next_update)?
            .min(date("qe_identity.nextUpdate", &qe.next_update)?);
        let fmspc = tcb
            .fmspc
            .ok_or_else(|| Error::MalformedCollateral {
                field: "tcb_info.fmspc",
                reason: "missing".into(),
            })?
            .to_ascii_uppercase();
        let mut h = Sha256::new();
        for part in [
            inner.tcb_info.as_bytes(),
            &inner.tcb_info_signature,
            inner.tcb_info_issuer_chain.as_bytes(),
            inner.qe_identity.as_bytes(),
            &inner.qe_identity_signature,
            inner.qe_identity_issuer_chain.as_bytes(),
            &inner.root_ca_crl,
            &inner.pck_crl,
            inner.pck_crl_issuer_chain.as_bytes(),
            inner.pck_certificate_chain.as_deref().unwrap_or("").as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Ok(Collateral {
            inner,
            digest: h.finalize().into(),
            fmspc,
            tcb_evaluation_data_number: tcb.tcb_evaluation_data_number,
            not_before,
            not_after,
        })
    }

    /// Serialises back to the JSON accepted by [`Collateral::from_json`].
    pub fn to_json(&self) -> String {
        // Serialising plain strings and byte vectors cannot fail.
        serde_json::to_string_pretty(&self.inner).unwrap_or_default()
    }

    /// A copy without the `pck_certificate_chain` override, so the quote's own PCK chain is used.
    pub fn without_pck_chain_override(&self) -> Result<Self> {
        let mut inner = self.inner.clone();
        inner.pck_certificate_chain = None;
        Self::from_inner(inner)
    }

    /// SHA-256 over every collateral part: the "collateral version" in verifier cache keys.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The platform this TCB info is for (upper-case hex).
    pub fn fmspc(&self) -> &str {
        &self.fmspc
    }

    /// Intel's TCB evaluation data number of the TCB info (higher = newer TCB recovery).
    pub fn tcb_evaluation_data_number(&self) -> u32 {
        self.tcb_evaluation_data_number
    }

    /// Latest issue date of the TCB info and QE identity.
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }

    /// Earliest `nextUpdate` of the TCB info and QE identity (CRL expiry is checked during
    /// verification as well).
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// Whether `now` is inside [`not_before`, `not_after`].
    pub fn is_fresh_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// What identifies the collateral a quote needs: its platform FMSPC and PCK issuing CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollateralKey {
    /// FMSPC, upper-case hex (12 characters).
    pub fmspc: String,
    /// `"platform"` or `"processor"`: which PCK CRL applies.
    pub pck_ca: String,
}

impl CollateralKey {
    /// The key for a parsed quote (reads the PCK leaf certificate's Intel extension).
    pub fn for_quote(quote: &TdQuote) -> Result<Self> {
        Ok(CollateralKey {
            fmspc: quote.fmspc()?,
            pck_ca: quote.pck_ca()?.to_owned(),
        })
    }
}

/// Somewhere collateral comes from. `now` lets caches decide what is still fresh.
pub trait CollateralSource {
    /// Returns collateral for `key`, or [`Error::CollateralNotFound`].
    fn collateral(
        &self,
        key: &CollateralKey,
        now: Timestamp,
    ) -> impl Future<Output = Result<Arc<Collateral>>> + Send;
}

/// A directory of collateral files named `<FMSPC>.json` (upper or lower case), or one file that
/// serves every key whose FMSPC matches it.
#[derive(Debug, Clone)]
pub struct DirectoryCollateral {
    path: PathBuf,
}

impl DirectoryCollateral {
    /// A directory (files `<FMSPC>.json`) or a single collateral file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirectoryCollateral { path: path.into() }
    }

    /// Loads collateral for `key` synchronously (blocking file I/O; async callers use
    /// [`CollateralSource::collateral`], which runs this on the blocking pool).
    pub fn load(&self, key: &CollateralKey) -> Result<Collateral> {
        let candidates = if self.path.is_dir() {
            vec![
                self.path.join(format!("{}.json", key.fmspc.to_ascii_uppercase())),
                self.path.join(format!("{}.json", key.fmspc.to_ascii_lowercase())),
            ]
        } else {
            vec![self.path.clone()]
        };
        for file in candidates {
            if file.is_file() {
                let c = Collateral::from_file(&file)?;
                if c.fmspc().eq_ignore_ascii_case(&key.fmspc) {
                    return Ok(c);
                }
            }
        }
        Err(Error::CollateralNotFound {
            fmspc: key.fmspc.clone(),
            source_name: self.path.display().to_string(),
        })
    }

    /// Writes collateral to `<dir>/<FMSPC>.json` (the directory must exist).
    pub fn store(&self, collateral: &Collateral) -> Result<PathBuf> {
        let file = self.path.join(format!("{}.json", collateral.fmspc()));
        std::fs::write(&file, collateral.to_json()).map_err(|e| Error::io("write collateral", &file, e))?;
        Ok(file)
    }
}

impl CollateralSource for DirectoryCollateral {
    /// Reads the file on tokio's blocking pool (inline when called outside a runtime).
    async fn collateral(&self, key: &CollateralKey, _now: Timestamp) -> Result<Arc<Collateral>> {
        let (me, key) = (self.clone(), key.clone());
        off_runtime(move || me.load(&key).map(Arc::new)).await
    }
}

/// Runs blocking file work off the async runtime when there is one (tokio's blocking pool), inline
/// otherwise (a synchronous caller is allowed to block).
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.spawn_blocking(f).await.map_err(|e| Error::Backend {
            backend: "blocking pool",
            reason: format!("file task failed: {e}"),
        })?,
        Err(_) => f(),
    }
}

/// An in-memory cache in front of another source, keyed by FMSPC + CA: a verifier that sees many
/// quotes from one platform fetches once, and again only after the cached copy's `nextUpdate`
/// (minus `refresh_margin_secs`).
#[derive(Debug)]
pub struct CachedCollateral<S> {
    inner: S,
    refresh_margin_secs: u64,
    entries: Mutex<HashMap<CollateralKey, Arc<Collateral>>>,
}

impl<S: CollateralSource + Sync> CachedCollateral<S> {
    /// Wraps `inner`; entries are refreshed one hour before they expire.
    pub fn new(inner: S) -> Self {
        Self::with_refresh_margin(inner, 3600)
    }

    /// Wraps `inner` with a custom refresh margin (seconds before `nextUpdate`).
    pub fn with_refresh_margin(inner: S, refresh_margin_secs: u64) -> Self {
        CachedCollateral {
            inner,
            refresh_margin_secs,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Puts collateral in the cache (e.g. loaded at start-up).
    pub fn insert(&self, key: CollateralKey, collateral: Arc<Collateral>) {
        self.lock().insert(key, collateral);
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CollateralKey, Arc<Collateral>>> {
        // A poisoned map holds only immutable Arcs: the data is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, key: &CollateralKey, now: Timestamp) -> Option<Arc<Collateral>> {
        let entry = self.lock().get(key).cloned()?;
        let refresh_at = Timestamp(
            entry
                .not_after()
                .as_secs()
                .saturating_sub(self.refresh_margin_secs),
        );
        (entry.not_before() <= now && now < refresh_at).then_some(entry)
    }
}

impl<S: CollateralSource + Sync> CollateralSource for CachedCollateral<S> {
    async fn collateral(&self, key: &CollateralKey, now: Timestamp) -> Result<Arc<Collateral>> {
        if let Some(hit) = self.cached(key, now) {
            return Ok(hit);
        }
        let fresh = self.inner.collateral(key, now).await?;
        self.insert(key.clone(), fresh.clone());
        Ok(fresh)
    }
}
