//! The TEE backend and the keys it holds: evidence for `GET /v1/quote` (0G layout, cached) and
//! `GET /v1/attestation?nonce=` (native layout, fresh per nonce), and the signer keys — derived by the
//! dstack KMS, generated per boot on bare TDX, or kept in the data dir for the simulated backend.
//! NVIDIA GPU evidence (NVML, or the simulated GPU) rides along, bound to the same nonce: the caller's
//! for `/v1/attestation` and gRPC `GetAttestation`; SHA-256 of REPORTDATA for the cached 0G quote
//! (`nvidia_payload`), which carries no nonce.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zg_attestation::{
    Backend, DstackProducer, EvidenceProducer, GpuProducer, KeyBinding, NvmlGpu, ReportData, SimulatedGpu,
    SimulatedTee, TdxProducer, Timestamp,
};
use zg_billing::{EthSigner, ReceiptSigner};

use crate::error::{Error, Result};

/// Which TEE backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// dstack if its socket exists, else bare TDX if configfs-tsm exists, else simulated.
    Auto,
    /// Software simulation (development only; clients refuse it unless told otherwise).
    Simulated,
    /// Bare TDX guest (configfs-tsm).
    Tdx,
    /// dstack guest agent.
    Dstack,
}

/// Where NVIDIA GPU evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GpuChoice {
    /// The simulated GPU with the simulated TEE; otherwise NVML when it loads with CC on; else none.
    Auto,
    /// No GPU evidence.
    None,
    /// NVML (`libnvidia-ml.so`): every GPU must be in confidential-computing mode, or start fails.
    Nvml,
    /// One simulated GPU (development only; clients refuse it unless they allow simulated evidence).
    Simulated,
}

fn gpu_producer(choice: GpuChoice, backend: Backend) -> Result<Option<Arc<dyn GpuProducer>>> {
    let simulated = || -> Result<Option<Arc<dyn GpuProducer>>> {
        tracing::warn!(
            "GPU evidence: SIMULATED GPU (software root, not NVIDIA); clients refuse it unless allowed"
        );
        Ok(Some(Arc::new(SimulatedGpu::new(1)?)))
    };
    match (choice, backend) {
        (GpuChoice::None, _) => Ok(None),
        (GpuChoice::Simulated, _) | (GpuChoice::Auto, Backend::Simulated) => simulated(),
        (GpuChoice::Nvml, _) => {
            let g = NvmlGpu::new()?;
            tracing::info!(gpus = g.count(), "GPU evidence: NVML, confidential computing on");
            Ok(Some(Arc::new(g)))
        }
        (GpuChoice::Auto, _) => match NvmlGpu::new() {
            Ok(g) => {
                tracing::info!(gpus = g.count(), "GPU evidence: NVML, confidential computing on");
                Ok(Some(Arc::new(g)))
            }
            Err(e) => {
                tracing::info!("no GPU evidence ({e}); clients with require_gpu will refuse this provider");
                Ok(None)
            }
        },
    }
}

/// The two signer keys of the TEE. Never logged: `Debug` prints the public halves only.
#[derive(Clone)]
pub struct TeeKeys {
    /// secp256k1: settlement items and 0G signatures (`teeSignerAddress`).
    pub settlement: EthSigner,
    /// ed25519: native receipts.
    pub response: ReceiptSigner,
}

impl std::fmt::Debug for TeeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeys")
            .field("settlement", &self.settlement.address())
            .field("response", &hex::encode(self.response.verifying_key().to_bytes()))
            .finish()
    }
}

impl TeeKeys {
    /// Keys from two 32-byte secrets.
    pub fn from_secrets(settlement: &[u8; 32], response_seed: &[u8; 32]) -> Result<Self> {
        Ok(Self {
            settlement: EthSigner::from_bytes(&B256::from(*settlement))?,
            response: ReceiptSigner::from_seed(response_seed),
        })
    }

    /// Fresh random keys.
    pub fn random() -> Result<Self> {
        Self::from_secrets(&rand::random(), &rand::random())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    warning: String,
    settlement: String,
    response_seed: String,
}

fn hex32(s: &str, path: &Path) -> Result<[u8; 32]> {
    let v = hex::decode(s.trim_start_matches("0x"))
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    v.ok_or_else(|| Error::Config {
        field: "data_dir",
        value: path.display().to_string(),
        fix:
            "the simulated key file is corrupt; delete it to generate new keys (re-registers the TEE signer)"
                .into(),
    })
}

/// A running TEE backend with the provider's keys bound.
pub struct Tee {
    producer: Arc<dyn EvidenceProducer>,
    gpu: Option<Arc<dyn GpuProducer>>,
    /// NVIDIA RIMs for this machine's GPUs, fetched once and stapled to every GPU evidence document,
    /// so a client verifies them offline (to NVIDIA's RIM root) without its own RIM source.
    stapled_rims: std::sync::RwLock<Vec<(String, Vec<u8>)>>,
    backend: Backend,
    keys: TeeKeys,
    app_compose: String,
    zerog_quote: Value,
    simulated_root: Option<String>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("backend", &self.backend)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tee {
    /// Starts the backend, obtains the keys and measures the app config (simulated and bare TDX:
    /// a `compose-hash` runtime event; dstack measures its compose itself).
    pub fn start(
        choice: BackendChoice,
        data_dir: &Path,
        dstack_socket: Option<PathBuf>,
        app_compose: String,
    ) -> Result<Self> {
        Self::start_with_gpu(choice, GpuChoice::Auto, data_dir, dstack_socket, app_compose)
    }

    /// [`Tee::start`] with an explicit GPU evidence source.
    pub fn start_with_gpu(
        choice: BackendChoice,
        gpu: GpuChoice,
        data_dir: &Path,
        dstack_socket: Option<PathBuf>,
        app_compose: String,
    ) -> Result<Self> {
        let socket = dstack_socket.unwrap_or_else(|| PathBuf::from("/var/run/dstack.sock"));
        let backend = match choice {
            BackendChoice::Auto if socket.exists() => Backend::Dstack,
            BackendChoice::Auto if Path::new("/sys/kernel/config/tsm/report").exists() => Backend::Tdx,
            BackendChoice::Auto | BackendChoice::Simulated => Backend::Simulated,
            BackendChoice::Tdx => Backend::Tdx,
            BackendChoice::Dstack => Backend::Dstack,
        };
        let (producer, keys, simulated_root): (Arc<dyn EvidenceProducer>, TeeKeys, Option<String>) =
            match backend {
                Backend::Simulated => {
                    tracing::warn!(
                        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!  SIMULATED TEE — NOT A REAL TEE. Quotes are signed by a local software key, !!\n\
                     !!  keys sit in the data dir. For development only; clients refuse it unless  !!\n\
                     !!  started with an explicit allow-simulated flag. Use --tee tdx|dstack.      !!\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
                    );
                    let sim = SimulatedTee::new()?;
                    let root = hex::encode(sim.root_public_key());
                    (Arc::new(sim), Self::simulated_keys(data_dir)?, Some(root))
                }
                Backend::Tdx => {
                    tracing::info!(
                        "TEE backend: bare TDX (configfs-tsm); signer keys are generated per boot and never leave memory"
                    );
                    (Arc::new(TdxProducer::new()), TeeKeys::random()?, None)
                }
                Backend::Dstack => {
                    let p = DstackProducer::with_socket(&socket);
                    let derive = |path: &str, purpose: &str| -> Result<[u8; 32]> {
                        let k = p.derive_key(path, purpose)?;
                        // Hash whatever the KMS returns into a 32-byte secret: format-independent.
                        Ok(Sha256::digest(k.key.as_bytes()).into())
                    };
                    let keys = TeeKeys::from_secrets(
                        &derive("zg-provider/settlement", "secp256k1")?,
                        &derive("zg-provider/response", "ed25519")?,
                    )?;
                    tracing::info!(socket = %socket.display(), "TEE backend: dstack; keys derived by the dstack KMS");
                    (Arc::new(p), keys, None)
                }
            };
        if backend != Backend::Dstack {
            producer.extend_runtime("compose-hash", &Sha256::digest(app_compose.as_bytes()))?;
        }
        let gpu = gpu_producer(gpu, backend)?;
        let mut tee = Tee {
            producer,
            gpu,
            stapled_rims: std::sync::RwLock::new(Vec::new()),
            backend,
            keys,
            app_compose,
            zerog_quote: Value::Null,
            simulated_root,
        };
        tee.zerog_quote = tee.build_zerog_quote()?;
        Ok(tee)
    }

    fn simulated_keys(data_dir: &Path) -> Result<TeeKeys> {
        let path = data_dir.join("tee-keys.simulated.json");
        if path.exists() {
            let raw = std::fs::read(&path).map_err(|source| Error::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
            let f: KeyFile = serde_json::from_slice(&raw).map_err(|e| Error::Config {
                field: "data_dir",
                value: path.display().to_string(),
                fix: format!("the simulated key file does not parse ({e}); delete it to generate new keys"),
            })?;
            return TeeKeys::from_secrets(&hex32(&f.settlement, &path)?, &hex32(&f.response_seed, &path)?);
        }
        let (s, r): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
        let f = KeyFile {
            warning: "SIMULATED TEE: these keys are NOT sealed by hardware. Development only.".into(),
            settlement: hex::encode(s),
            response_seed: hex::encode(r),
        };
        let text = serde_json::to_vec_pretty(&f).unwrap_or_default();
        write_private(&path, &text)?;
        tracing::info!(path = %path.display(), "generated simulated TEE keys");
        TeeKeys::from_secrets(&s, &r)
    }

    fn build_zerog_quote(&self) -> Result<Value> {
        let address = self.keys.settlement.address();
        let rd = ReportData::zerog(&address);
        let ev = self.producer.quote(&rd)?;
        // No verifier nonce here: the GPU reports bind SHA-256 of this REPORTDATA instead.
        let gpu_nonce: [u8; 32] = Sha256::digest(rd).into();
        let nvidia_payload = match &self.gpu {
            Some(g) => g.evidence(&gpu_nonce)?.to_json(Some(&gpu_nonce)),
            None => String::new(),
        };
        Ok(json!({
            "quote": hex::encode(&ev.quote),
            "report_data": STANDARD.encode(rd),
            "event_log": ev.event_log.clone().unwrap_or_else(|| "[]".into()),
            "tcb_info": json!({"app_compose": self.app_compose}).to_string(),
            "signing_address": address.to_checksum(None),
            "signing_algo": "ecdsa",
            "backend": self.backend,
            "simulated": self.backend == Backend::Simulated,
            "simulated_root": self.simulated_root,
            "nvidia_payload": nvidia_payload,
        }))
    }

    /// Fetches the RIMs this machine's GPUs need from NVIDIA's RIM service (`base_url`, default
    /// [`zg_attestation::NVIDIA_RIM_SERVICE_URL`]) and staples them to every later GPU evidence
    /// document. Only RIMs the evidence does not already carry are fetched; a failure is returned (the
    /// provider keeps serving; clients then need their own RIM source). Returns the ids stapled.
    pub async fn staple_rims(self: &Arc<Self>, base_url: Option<&str>) -> Result<Vec<String>> {
        let Some(gpu) = self.gpu.clone() else {
            return Ok(Vec::new());
        };
        // NVML calls block: off the runtime.
        let ev = tokio::task::spawn_blocking(move || gpu.evidence(&[0; 32]))
            .await
            .map_err(|e| Error::BadRequest(format!("GPU evidence task failed: {e}")))??;
        let svc = match base_url {
            Some(u) => zg_attestation::NvidiaRimService::with_base_url(u)?,
            None => zg_attestation::NvidiaRimService::new()?,
        };
        let mut fetched = Vec::new();
        for id in ev.rim_ids() {
            if ev.rims.iter().any(|(have, _)| *have == id) {
                continue;
            }
            let xml = svc.fetch_xml(&id).await?;
            fetched.push((id, xml));
        }
        let ids = fetched.iter().map(|(id, _)| id.clone()).collect();
        self.stapled_rims
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(fetched);
        Ok(ids)
    }

    /// The same TEE with another GPU evidence source (tests: a GPU that staples nothing).
    pub fn with_gpu_producer(mut self, gpu: Option<Arc<dyn GpuProducer>>) -> Self {
        self.gpu = gpu;
        self
    }

    /// Whether this TEE sends evidence from NVIDIA GPUs through NVML.
    pub fn has_nvml_gpu(&self) -> bool {
        self.gpu.as_ref().is_some_and(|g| g.name() == "nvml")
    }

    /// The signer keys.
    pub fn keys(&self) -> &TeeKeys {
        &self.keys
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The settlement signer address (`teeSignerAddress`).
    pub fn signer(&self) -> Address {
        self.keys.settlement.address()
    }

    /// The settlement key as zg-adapters takes it; built for one use and dropped (never stored elsewhere,
    /// never logged).
    fn settlement_key(&self) -> std::result::Result<k256::ecdsa::SigningKey, zg_adapters::Error> {
        k256::ecdsa::SigningKey::from_slice(self.keys.settlement.to_bytes().as_slice()).map_err(|e| {
            zg_adapters::Error::BadSignature {
                what: "TEE settlement key",
                reason: e.to_string(),
            }
        })
    }

    /// EIP-191 signature by the TEE signer (`teeSignerAddress`) over `digest` (a zg-adapters challenge): the
    /// broker recovers from it the public key it seals the adapter to.
    pub fn sign_adapter_digest(
        &self,
        digest: &B256,
    ) -> std::result::Result<zg_adapters::Sig65, zg_adapters::Error> {
        zg_adapters::sign(&self.settlement_key()?, digest)
    }

    /// Opens a sealed adapter with the TEE signer's secret key (blocking: decrypts up to `max` bytes), checking
    /// its tags are signed by `broker_signer`.
    pub fn open_adapter(
        &self,
        sealed: &zg_adapters::SealedAdapter,
        broker_signer: Address,
        max: u64,
    ) -> std::result::Result<zg_adapters::AdapterPackage, zg_adapters::Error> {
        let secret = k256::SecretKey::from(self.settlement_key()?.as_nonzero_scalar());
        sealed.open(&secret, broker_signer, max)
    }

    /// `GET /v1/quote`: the 0G-layout quote document (cached at start).
    pub fn zerog_quote(&self) -> &Value {
        &self.zerog_quote
    }

    /// Fresh native-layout evidence binding both keys and `nonce`.
    pub fn fresh(&self, nonce: &[u8; 32]) -> Result<Value> {
        let binding = KeyBinding::new(
            self.signer(),
            self.keys.response.verifying_key().to_bytes(),
            None,
            Timestamp(now_secs()),
        )?;
        let mut ev = self.producer.evidence_for(&binding, nonce)?;
        if let Some(g) = &self.gpu {
            let mut gpu = g.evidence(nonce)?;
            let stapled = self
                .stapled_rims
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (id, xml) in stapled.iter() {
                if !gpu.rims.iter().any(|(have, _)| have == id) {
                    gpu.rims.push((id.clone(), xml.clone()));
                }
            }
            ev.gpu_evidence = Some(gpu.to_json(Some(nonce)));
        }
        let mut doc: Value = serde_json::from_str(&ev.to_json()).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut doc {
            m.insert("nonce".into(), json!(hex::encode(nonce)));
            m.insert("backend".into(), json!(self.backend));
            m.insert("simulated".into(), json!(self.backend == Backend::Simulated));
            m.insert("simulated_root".into(), json!(self.simulated_root));
            m.insert(
                "tcb_info".into(),
                json!(json!({"app_compose": self.app_compose}).to_string()),
            );
        }
        Ok(doc)
    }
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).map_err(|source| Error::Io {
        op: "create",
        path: path.to_owned(),
        source,
    })?;
    f.write_all(bytes).map_err(|source| Error::Io {
        op: "write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_keys_persist_and_quote_has_0g_layout() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tee::start(BackendChoice::Simulated, dir.path(), None, "compose".into()).unwrap();
        let b = Tee::start(BackendChoice::Simulated, dir.path(), None, "compose".into()).unwrap();
        assert_eq!(a.signer(), b.signer());
        let q = a.zerog_quote();
        let rd = STANDARD.decode(q["report_data"].as_str().unwrap()).unwrap();
        assert_eq!(rd.len(), 64);
        assert_eq!(&rd[..42], a.signer().to_checksum(None).as_bytes());
        assert!(rd[42..].iter().all(|&x| x == 0));
        assert!(q["event_log"].as_str().unwrap().contains("compose-hash"));
        let fresh = a.fresh(&[9; 32]).unwrap();
        assert_eq!(fresh["nonce"], hex::encode([9u8; 32]));
        assert_eq!(fresh["simulated"], true);
        // The simulated GPU's report rides along, bound to the same nonce; the 0G quote binds REPORTDATA.
        let gpu = zg_attestation::GpuEvidence::from_json(fresh["gpu_evidence"].as_str().unwrap()).unwrap();
        let report = zg_attestation::SpdmReport::parse(&gpu.devices[0].report).unwrap();
        assert_eq!(report.request_nonce, [9; 32]);
        let payload = zg_attestation::GpuEvidence::from_json(q["nvidia_payload"].as_str().unwrap()).unwrap();
        let report = zg_attestation::SpdmReport::parse(&payload.devices[0].report).unwrap();
        assert_eq!(report.request_nonce, <[u8; 32]>::from(Sha256::digest(&rd)));
        let none = Tee::start_with_gpu(
            BackendChoice::Simulated,
            GpuChoice::None,
            dir.path(),
            None,
            "c".into(),
        )
        .unwrap();
        assert!(none.fresh(&[9; 32]).unwrap().get("gpu_evidence").is_none());
        assert_eq!(none.zerog_quote()["nvidia_payload"], "");
    }
}

#[cfg(test)]
mod staple_tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Write as _};

    /// A simulated GPU that staples nothing, like NVML.
    struct Bare(SimulatedGpu);
    impl GpuProducer for Bare {
        fn name(&self) -> &'static str {
            "bare"
        }
        fn evidence(&self, nonce: &[u8; 32]) -> zg_attestation::Result<zg_attestation::GpuEvidence> {
            let mut e = self.0.evidence(nonce)?;
            e.rims.clear();
            Ok(e)
        }
    }

    #[tokio::test]
    async fn rims_fetched_once_are_stapled_to_fresh_evidence() {
        let sim = SimulatedGpu::new(1).unwrap();
        let rims = sim.evidence(&[0; 32]).unwrap().rims;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = rims.clone();
        let server = std::thread::spawn(move || {
            let mut n = 0;
            for stream in listener.incoming().take(served.len()) {
                let mut stream = stream.unwrap();
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                while {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    h != "\r\n" && !h.is_empty()
                } {}
                let path = line.split_whitespace().nth(1).unwrap().to_owned();
                let (_, xml) = served.iter().find(|(id, _)| path.ends_with(id.as_str())).unwrap();
                let body = json!({"rim": STANDARD.encode(xml)}).to_string();
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                n += 1;
            }
            n
        });
        let dir = tempfile::tempdir().unwrap();
        let tee = Tee::start_with_gpu(
            BackendChoice::Simulated,
            GpuChoice::None,
            dir.path(),
            None,
            "c".into(),
        )
        .unwrap()
        .with_gpu_producer(Some(Arc::new(Bare(sim))));
        let tee = Arc::new(tee);
        let before = zg_attestation::GpuEvidence::from_json(
            tee.fresh(&[1; 32]).unwrap()["gpu_evidence"].as_str().unwrap(),
        )
        .unwrap();
        assert!(before.rims.is_empty());
        let mut ids = tee
            .staple_rims(Some(&format!("http://{addr}/v1/rim/")))
            .await
            .unwrap();
        ids.sort();
        let mut want: Vec<String> = rims.iter().map(|(id, _)| id.clone()).collect();
        want.sort();
        assert_eq!(ids, want);
        assert_eq!(server.join().unwrap(), 2);
        let after = zg_attestation::GpuEvidence::from_json(
            tee.fresh(&[1; 32]).unwrap()["gpu_evidence"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(after.rims.len(), 2);
        // A client with no RIM source of its own verifies the stapled RIMs (here: simulated roots).
        let policy = zg_attestation::AttestationPolicy {
            dangerous_allow_simulated: true,
            ..Default::default()
        }
        .with_nonce([1; 32]);
        let r = zg_attestation::Verifier::new_prod().verify_gpu(
            &after.to_json(None),
            &policy,
            None,
            Timestamp(now_secs()),
        );
        assert!(r.passed(), "{r}");
    }
}
