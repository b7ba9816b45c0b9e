//! GPU collateral: NVIDIA's RIMs (by identifier) and OCSP responses, fetched apart from
//! verification and passed in, like Intel's DCAP collateral. Sources: a directory (always), an
//! in-memory cache in front of any source (always), and NVIDIA's RIM service over HTTP (feature
//! `nvidia-rim`). Parsing happens when collateral is loaded, so verification only checks.

use super::ocsp::OcspResponse;
use super::rim::Rim;
use super::x509::Cert;
use crate::collateral::off_runtime;
use crate::{Error, Result, Timestamp};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// RIMs keyed by NVIDIA's RIM identifier (`NV_GPU_DRIVER_GH100_550.90.07`,
/// `NV_GPU_VBIOS_1010_0200_882_96009F0001`) and OCSP responses, all parsed.
#[derive(Debug, Clone, Default)]
pub struct GpuCollateral {
    rims: BTreeMap<String, Arc<Rim>>,
    ocsp: Vec<Arc<OcspResponse>>,
}

impl GpuCollateral {
    /// Empty collateral.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and adds a RIM under `id` (replacing any RIM with that id).
    pub fn add_rim(&mut self, id: &str, xml: &[u8]) -> Result<()> {
        self.rims.insert(id.to_owned(), Arc::new(Rim::parse(xml)?));
        Ok(())
    }

    /// Adds an already parsed RIM under `id`.
    pub fn insert_rim(&mut self, id: &str, rim: Arc<Rim>) {
        self.rims.insert(id.to_owned(), rim);
    }

    /// Parses and adds an OCSP response (DER, or base64 of DER as NVIDIA's tools store them).
    pub fn add_ocsp(&mut self, bytes: &[u8]) -> Result<()> {
        let der = if bytes.first() == Some(&0x30) {
            bytes.to_vec()
        } else {
            let text: String = String::from_utf8_lossy(bytes)
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| Error::MalformedGpuEvidence {
                    field: "ocsp",
                    reason: format!("neither DER nor base64: {e}"),
                })?
        };
        let r = OcspResponse::parse(&der).map_err(|reason| Error::MalformedGpuEvidence {
            field: "ocsp",
            reason,
        })?;
        self.ocsp.push(Arc::new(r));
        Ok(())
    }

    /// The RIM stored under `id`.
    pub fn rim(&self, id: &str) -> Option<&Rim> {
        self.rims.get(id).map(Arc::as_ref)
    }

    /// Identifiers of the stored RIMs.
    pub fn rim_ids(&self) -> impl Iterator<Item = &str> {
        self.rims.keys().map(String::as_str)
    }

    /// Number of OCSP responses.
    pub fn ocsp_len(&self) -> usize {
        self.ocsp.len()
    }

    pub(crate) fn ocsp_for<'a>(
        &'a self,
        cert: &'a Cert,
        issuer: &'a Cert,
    ) -> impl Iterator<Item = &'a OcspResponse> {
        self.ocsp
            .iter()
            .map(Arc::as_ref)
            .filter(move |o| o.is_for(cert, issuer))
    }

    /// SHA-256 over every RIM (id and file hash) and OCSP response: the cache key part.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (id, r) in &self.rims {
            h.update((id.len() as u64).to_le_bytes());
            h.update(id.as_bytes());
            h.update(r.sha256);
        }
        for o in &self.ocsp {
            h.update(Sha256::digest(&o.der));
        }
        h.finalize().into()
    }
}

/// Longest RIM identifier accepted (NVIDIA's are about 40 characters).
const MAX_RIM_ID_LEN: usize = 128;

/// Refuses anything but a RIM identifier: ASCII letters, digits, `.`, `_`, `-`, not starting with `.`.
///
/// Who: the identifiers come from strings inside a report that has not been verified yet (driver
/// version, project, SKU), i.e. from whoever sends the evidence. Worst case without this check: a
/// `project` of `x/../../elsewhere` makes [`DirectoryGpuCollateral`] read files outside its directory,
/// and a `?`/`#` makes [`NvidiaRimService`] request another URL.
pub(crate) fn check_rim_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RIM_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::MalformedGpuEvidence {
            field: "rim",
            reason: format!("{id:?} is not a RIM identifier"),
        })
    }
}

/// Somewhere RIMs come from. `now` lets caches decide what is still usable.
pub trait GpuCollateralSource {
    /// The RIM with NVIDIA identifier `id`.
    fn rim(&self, id: &str, now: Timestamp) -> impl Future<Output = Result<Arc<Rim>>> + Send;
}

/// A directory of RIMs and OCSP responses: `<id>.xml` or `<id>.swidtag` (NVIDIA's names),
/// any other `*.xml`/`*.swidtag` found by its version when exactly one matches, and OCSP
/// responses as `*.der`, `*.ocsp` or `*.dat` (base64) files, also under `ocsp/`.
#[derive(Debug, Clone)]
pub struct DirectoryGpuCollateral {
    dir: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

impl DirectoryGpuCollateral {
    /// A collateral directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirectoryGpuCollateral { dir: dir.into() }
    }

    /// Loads the RIM for `id` (blocking file I/O: call [`GpuCollateralSource::rim`] from async code).
    /// `version` (the report's driver or VBIOS version) finds a file named otherwise.
    pub fn load_rim(&self, id: &str, version: Option<&str>) -> Result<Rim> {
        check_rim_id(id)?;
        for ext in ["xml", "swidtag"] {
            let p = self.dir.join(format!("{id}.{ext}"));
            if p.is_file() {
                return Rim::parse(&read(&p)?);
            }
        }
        let not_found = || Error::MalformedGpuEvidence {
            field: "rim",
            reason: format!(
                "no RIM {id} in {}: add {id}.xml (from NVIDIA's RIM service), or use the nvidia-rim source",
                self.dir.display()
            ),
        };
        let Some(version) = version else {
            return Err(not_found());
        };
        let mut hits = Vec::new();
        for p in list(&self.dir)? {
            if has_ext(&p, &["xml", "swidtag"])
                && let Ok(rim) = Rim::parse(&read(&p)?)
                && rim.version.eq_ignore_ascii_case(version)
            {
                hits.push((p, rim));
            }
        }
        match hits.len() {
            0 => Err(not_found()),
            1 => Ok(hits.remove(0).1),
            _ => Err(Error::MalformedGpuEvidence {
                field: "rim",
                reason: format!(
                    "{} RIMs in {} are for version {version} ({}): name the right one {id}.xml",
                    hits.len(),
                    self.dir.display(),
                    hits.iter()
                        .map(|(p, _)| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Every OCSP response file in the directory and its `ocsp/` subdirectory (blocking).
    pub fn load_ocsp(&self, into: &mut GpuCollateral) -> Result<usize> {
        let mut n = 0usize;
        for dir in [self.dir.clone(), self.dir.join("ocsp")] {
            if !dir.is_dir() {
                continue;
            }
            for p in list(&dir)? {
                if has_ext(&p, &["der", "ocsp", "dat"]) {
                    into.add_ocsp(&read(&p)?)?;
                    n = n.saturating_add(1);
                }
            }
        }
        Ok(n)
    }

    /// Collateral for `evidence`: the RIMs its reports name (those found) and every OCSP response
    /// in the directory (blocking; see [`DirectoryGpuCollateral::for_evidence_async`]).
    pub fn for_evidence(&self, evidence: &super::GpuEvidence) -> Result<GpuCollateral> {
        let mut c = GpuCollateral::new();
        for d in &evidence.devices {
            let Ok(rep) = super::SpdmReport::parse(&d.report) else {
                continue; // the verifier reports the parse error
            };
            for (id, v) in [
                (rep.driver_rim_id(), rep.driver_version()),
                (rep.vbios_rim_id(), rep.vbios_version()),
            ] {
                if let Some(id) = id
                    && c.rim(&id).is_none()
                    && let Ok(rim) = self.load_rim(&id, v.as_deref())
                {
                    c.insert_rim(&id, Arc::new(rim));
                }
            }
        }
        self.load_ocsp(&mut c)?;
        Ok(c)
    }

    /// [`DirectoryGpuCollateral::for_evidence`] off the async runtime.
    pub async fn for_evidence_async(&self, evidence: &super::GpuEvidence) -> Result<GpuCollateral> {
        let (me, ev) = (self.clone(), evidence.clone());
        off_runtime(move || me.for_evidence(&ev)).await
    }
}

impl GpuCollateralSource for DirectoryGpuCollateral {
    async fn rim(&self, id: &str, _now: Timestamp) -> Result<Arc<Rim>> {
        let (me, id) = (self.clone(), id.to_owned());
        off_runtime(move || me.load_rim(&id, None).map(Arc::new)).await
    }
}

/// An in-memory cache in front of another source: a RIM is fetched once and kept while its
/// signing chain is valid.
#[derive(Debug)]
pub struct CachedGpuCollateral<S> {
    inner: S,
    entries: Mutex<HashMap<String, Arc<Rim>>>,
}

impl<S: GpuCollateralSource + Sync> CachedGpuCollateral<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CachedGpuCollateral {
            inner,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Number of cached RIMs.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Rim>>> {
        // Only immutable Arcs inside: a poisoned map is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Collateral with the RIMs `evidence` names (fetched through the cache; missing ones are left
    /// out, and the verifier reports them).
    pub async fn for_evidence(&self, evidence: &super::GpuEvidence, now: Timestamp) -> GpuCollateral {
        let mut c = GpuCollateral::new();
        for d in &evidence.devices {
            let Ok(rep) = super::SpdmReport::parse(&d.report) else {
                continue;
            };
            for id in [rep.driver_rim_id(), rep.vbios_rim_id()].into_iter().flatten() {
                if c.rim(&id).is_none()
                    && let Ok(rim) = self.rim(&id, now).await
                {
                    c.insert_rim(&id, rim);
                }
            }
        }
        c
    }
}

impl<S: GpuCollateralSource + Sync> GpuCollateralSource for CachedGpuCollateral<S> {
    async fn rim(&self, id: &str, now: Timestamp) -> Result<Arc<Rim>> {
        let hit = self.lock().get(id).cloned();
        if let Some(r) = hit {
            let (from, until) = r.chain_window();
            if from <= now && now <= until {
                return Ok(r);
            }
        }
        let fresh = self.inner.rim(id, now).await?;
        self.lock().insert(id.to_owned(), fresh.clone());
        Ok(fresh)
    }
}

/// NVIDIA's RIM service (`GET {base}{id}` → `{"id", "rim": base64 XML, "sha256", …}`), feature
/// `nvidia-rim`. Put a [`CachedGpuCollateral`] in front so each RIM is fetched once. What it returns
/// is verified like any RIM (signature to NVIDIA's RIM root); the service is not trusted.
#[cfg(feature = "nvidia-rim")]
#[derive(Debug, Clone)]
pub struct NvidiaRimService {
    base_url: String,
    client: reqwest::Client,
}

/// NVIDIA's production RIM service.
#[cfg(feature = "nvidia-rim")]
pub const NVIDIA_RIM_SERVICE_URL: &str = "https://rim.attestation.nvidia.com/v1/rim/";

#[cfg(feature = "nvidia-rim")]
impl NvidiaRimService {
    /// The production service.
    pub fn new() -> Result<Self> {
        Self::with_base_url(NVIDIA_RIM_SERVICE_URL)
    }

    /// Another base URL (a mirror, a test server); the RIM id is appended.
    pub fn with_base_url(base_url: impl Into<String>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Fetch {
                url: "(client)".into(),
                reason: e.to_string(),
            })?;
        Ok(NvidiaRimService {
            base_url: base_url.into(),
            client,
        })
    }

    /// Fetches and parses the RIM `id` (not verified: that is the verifier's job, at its `now`).
    pub async fn fetch(&self, id: &str) -> Result<Rim> {
        Rim::parse(&self.fetch_xml(id).await?)
    }

    /// Fetches the RIM `id` as XML bytes (checked to parse as a RIM), e.g. to staple it to evidence.
    pub async fn fetch_xml(&self, id: &str) -> Result<Vec<u8>> {
        check_rim_id(id)?;
        let url = format!("{}{id}", self.base_url);
        let fail = |reason: String| Error::Fetch {
            url: url.clone(),
            reason,
        };
        let mut resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        // Bounded read: a RIM document is ~30 KiB; base64 and JSON add a third.
        let cap = super::rim::MAX_RIM_BYTES.saturating_mul(2);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > cap {
                return Err(fail(format!("response larger than {cap} bytes")));
            }
        }
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
        let b64 = v
            .get("rim")
            .and_then(|r| r.as_str())
            .ok_or_else(|| fail("no \"rim\" field".into()))?;
        use base64::Engine as _;
        let xml = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| fail(format!("\"rim\" is not base64: {e}")))?;
        Rim::parse(&xml)?;
        Ok(xml)
    }
}

#[cfg(feature = "nvidia-rim")]
impl GpuCollateralSource for NvidiaRimService {
    async fn rim(&self, id: &str, _now: Timestamp) -> Result<Arc<Rim>> {
        self.fetch(id).await.map(Arc::new)
    }
}
