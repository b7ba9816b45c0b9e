//! The TEE backend and the broker's one key: the secp256k1 signer that signs sealed models' tags and
//! settlements (`teeSignerAddress` on FineTuningServing) — derived by the dstack KMS, generated per boot on
//! bare TDX, or kept in the data dir for the simulated backend. `GET /v1/quote` serves 0G's layout
//! (`report_data` = the signer address, NUL-padded), which the official CLI's `verify` and `create-task` read.
//!
//! The provider has its own module for the same job; the broker's differs in what it binds (one key, its own
//! dstack derivation path `zg-broker/settlement`), so a provider and a broker in one CVM never share a key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::Address;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zg_attestation::{
    Backend, DstackProducer, EvidenceProducer, KeyBinding, ReportData, SimulatedTee, TdxProducer, Timestamp,
};
use zg_finetune::SigningKey;

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

/// A running TEE backend with the broker's key bound.
pub struct Tee {
    backend: Backend,
    key: SigningKey,
    quote: Value,
    producer: Arc<dyn EvidenceProducer>,
    /// The ed25519 "response key" the native key-binding document carries. The broker signs no responses:
    /// this is a fresh key whose secret is dropped at start, so nothing can ever sign with it.
    placeholder_response_key: [u8; 32],
    app_compose: String,
    simulated_root: Option<String>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("backend", &self.backend)
            .field("signer", &self.signer())
            .finish_non_exhaustive()
    }
}

fn config_err(path: &Path, fix: &str) -> Error {
    Error::Config {
        field: "data_dir",
        value: path.display().to_string(),
        fix: fix.to_owned(),
    }
}

impl Tee {
    /// Starts the backend, obtains the key and measures the app config (a `compose-hash` runtime event;
    /// dstack measures its compose itself).
    pub fn start(
        choice: BackendChoice,
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
        let (producer, key, simulated_root): (Arc<dyn EvidenceProducer>, SigningKey, Option<String>) =
            match backend {
                Backend::Simulated => {
                    tracing::warn!(
                        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!  SIMULATED TEE — NOT A REAL TEE. Quotes are signed by a local software key, !!\n\
                     !!  the signer key sits in the data dir, datasets are NOT protected. For      !!\n\
                     !!  development only. Use --tee tdx|dstack on a confidential VM.             !!\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
                    );
                    let sim = SimulatedTee::new()?;
                    let root = hex::encode(sim.root_public_key());
                    (Arc::new(sim), simulated_key(data_dir)?, Some(root))
                }
                Backend::Tdx => {
                    tracing::info!(
                        "TEE backend: bare TDX (configfs-tsm); the signer key is generated per boot and never leaves memory"
                    );
                    let key = SigningKey::random(&mut rand::rngs::OsRng);
                    (Arc::new(TdxProducer::new()), key, None)
                }
                Backend::Dstack => {
                    let p = DstackProducer::with_socket(&socket);
                    let k = p.derive_key("zg-broker/settlement", "secp256k1")?;
                    // Hash whatever the KMS returns into a 32-byte secret: format-independent.
                    let secret: [u8; 32] = Sha256::digest(k.key.as_bytes()).into();
                    let key = SigningKey::from_slice(&secret).map_err(|e| Error::Config {
                        field: "tee.backend",
                        value: "dstack".into(),
                        fix: format!("the derived key is not a secp256k1 key ({e})"),
                    })?;
                    tracing::info!(socket = %socket.display(), "TEE backend: dstack; key derived by the dstack KMS");
                    (Arc::new(p), key, None)
                }
            };
        if backend != Backend::Dstack {
            producer.extend_runtime("compose-hash", &Sha256::digest(app_compose.as_bytes()))?;
        }
        let signer = zg_finetune::sig::address_of(&key);
        let rd = ReportData::zerog(&signer);
        let ev = producer.quote(&rd)?;
        let quote = json!({
            "quote": hex::encode(&ev.quote),
            "report_data": STANDARD.encode(rd),
            "event_log": ev.event_log.clone().unwrap_or_else(|| "[]".into()),
            "tcb_info": json!({"app_compose": app_compose}).to_string(),
            "signing_address": signer.to_checksum(None),
            "signing_algo": "ecdsa",
            "backend": backend,
            "simulated": backend == Backend::Simulated,
            "simulated_root": simulated_root,
        });
        let placeholder_response_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng)
            .verifying_key()
            .to_bytes();
        Ok(Self {
            backend,
            key,
            quote,
            producer,
            placeholder_response_key,
            app_compose,
            simulated_root,
        })
    }

    /// The signing key (never logged).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The signer address (`teeSignerAddress`).
    pub fn signer(&self) -> Address {
        zg_finetune::sig::address_of(&self.key)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `GET /v1/quote` (0G layout, made at start).
    pub fn quote(&self) -> &Value {
        &self.quote
    }

    /// `GET /v1/attestation?nonce=`: fresh evidence in the native layout, binding the signer and the caller's
    /// nonce (what `zg fine-tuning verify` checks; 0G's quote has no nonce, so it could be replayed).
    pub fn fresh(&self, nonce: &[u8; 32]) -> Result<Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let binding = KeyBinding::new(self.signer(), self.placeholder_response_key, None, Timestamp(now))?;
        let ev = self.producer.evidence_for(&binding, nonce)?;
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

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    warning: String,
    settlement: String,
}

fn simulated_key(data_dir: &Path) -> Result<SigningKey> {
    let path = data_dir.join("tee-key.simulated.json");
    if path.exists() {
        let raw = std::fs::read(&path).map_err(|source| Error::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let f: KeyFile = serde_json::from_slice(&raw).map_err(|_| {
            config_err(
                &path,
                "the simulated key file does not parse; delete it to generate a new key",
            )
        })?;
        let bytes = hex::decode(f.settlement.trim_start_matches("0x"))
            .map_err(|_| config_err(&path, "the simulated key file is corrupt; delete it"))?;
        return SigningKey::from_slice(&bytes)
            .map_err(|_| config_err(&path, "the simulated key file is corrupt; delete it"));
    }
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let f = KeyFile {
        warning: "SIMULATED TEE: this key is NOT sealed by hardware. Development only.".into(),
        settlement: hex::encode(key.to_bytes()),
    };
    write_private(&path, &serde_json::to_vec_pretty(&f).unwrap_or_default())?;
    tracing::info!(path = %path.display(), "generated the simulated TEE key");
    Ok(key)
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| Error::Io {
        op: "write",
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_key_persists_and_quote_has_the_0g_layout() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tee::start(BackendChoice::Simulated, dir.path(), None, "compose".into()).unwrap();
        let b = Tee::start(BackendChoice::Simulated, dir.path(), None, "compose".into()).unwrap();
        assert_eq!(a.signer(), b.signer());
        let q = a.quote();
        let rd = STANDARD.decode(q["report_data"].as_str().unwrap()).unwrap();
        assert_eq!(rd.len(), 64);
        assert_eq!(&rd[..42], a.signer().to_checksum(None).as_bytes());
        assert!(rd[42..].iter().all(|&x| x == 0));
        assert!(q["event_log"].as_str().unwrap().contains("compose-hash"));
        let fresh = a.fresh(&[9; 32]).unwrap();
        assert_eq!(fresh["nonce"], hex::encode([9u8; 32]));
        assert_eq!(fresh["simulated"], true);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("tee-key.simulated.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
