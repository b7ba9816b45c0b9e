//! What a verifier accepts: allowed images, apps, TCB status, binding and freshness requirements.

use crate::{Error, ReportDataLayout, Result};
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Intel TCB statuses, best first. The policy's minimum accepts it and everything better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    /// Platform fully patched.
    UpToDate,
    /// Patched, but software mitigations (e.g. for a CPU erratum) are needed.
    SWHardeningNeeded,
    /// Patched, but platform configuration must change.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Missing a TCB recovery.
    OutOfDate,
    /// Out of date and needs configuration.
    OutOfDateConfigurationNeeded,
    /// Keys compromised: never acceptable.
    Revoked,
}

impl TcbStatus {
    /// Parses Intel's spelling (`UpToDate`, `SWHardeningNeeded`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            _ => return None,
        })
    }

    /// Intel's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }
}

/// One allow-listed OS image: MRTD and RTMR0-2 (hex, 48 bytes each). An unset register is not checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    /// A name for reports (e.g. `dstack-0.5.3-nvidia`).
    pub name: String,
    /// Expected MRTD.
    pub mrtd: Option<String>,
    /// Expected RTMR0.
    pub rtmr0: Option<String>,
    /// Expected RTMR1.
    pub rtmr1: Option<String>,
    /// Expected RTMR2.
    pub rtmr2: Option<String>,
}

/// The verifier's acceptance policy. Loads from TOML or JSON; unknown keys are rejected so a typo
/// cannot silently disable a check. Opt-outs default to `false`; bypasses are named `dangerous_*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationPolicy {
    /// Allowed OS images (MRTD, RTMR0-2). Together with `allowed_compose_hashes` and
    /// `allowed_app_ids` this is the allow-list: when all three are empty verification fails
    /// (`measurements.allowlist`) unless `dangerous_any_image` is set.
    pub images: Vec<ImagePolicy>,
    /// Allowed compose hashes (hex) named by the event log; empty = any.
    pub allowed_compose_hashes: Vec<String>,
    /// Allowed dstack app ids (hex); empty = any.
    pub allowed_app_ids: Vec<String>,
    /// Worst acceptable TCB status (default `UpToDate`). `Revoked` is never accepted.
    pub min_tcb_status: TcbStatus,
    /// Advisory IDs (e.g. `INTEL-SA-01192`) that may be present; any other advisory fails.
    pub allowed_advisory_ids: Vec<String>,
    /// Maximum age of the evidence in seconds, measured from the bound `issued_at` (native layout).
    pub max_quote_age_secs: Option<u64>,
    /// The nonce REPORTDATA (and GPU evidence) must carry (hex, 32 bytes).
    #[serde(
        with = "crate::reportdata::opt_hex32",
        skip_serializing_if = "Option::is_none"
    )]
    pub nonce: Option<[u8; 32]>,
    /// The settlement signer the quote must bind (e.g. `teeSignerAddress` from chain).
    pub expected_signer: Option<Address>,
    /// The provider address the binding must name (native layout, `KeyBinding::provider`): set it to the
    /// provider being verified so that another provider serving this TEE's attestation as its own (to get
    /// its signer acknowledged) is refused. Unset = not checked.
    pub expected_provider: Option<Address>,
    /// REPORTDATA layout the provider uses (default native).
    pub report_data_layout: ReportDataLayout,
    /// Require an event log whose replay equals the quote's RTMRs (default true).
    pub require_event_log: bool,
    /// Require NVIDIA GPU evidence bound to the nonce (default false). GPU evidence that is present
    /// is always verified, required or not.
    pub require_gpu: bool,
    /// Number of GPUs the evidence must cover (distinct devices); unset = any number.
    pub gpu_count: Option<u32>,
    /// Accepted GPU driver versions (e.g. `550.90.07`); empty = any version with a verified RIM.
    pub allowed_gpu_driver_versions: Vec<String>,
    /// Accepted VBIOS versions (e.g. `96.00.9F.00.01`, any case); empty = any version with a verified RIM.
    pub allowed_gpu_vbios_versions: Vec<String>,
    /// Require a valid OCSP "good" for every NVIDIA certificate (default false: missing responses are
    /// reported as not verified; a revoked certificate always fails).
    pub require_gpu_ocsp: bool,
    /// DANGEROUS: accept any OS image and application when the allow-list (images, compose hashes,
    /// app ids) is empty. Default false.
    pub dangerous_any_image: bool,
    /// DANGEROUS: accept debug TDs (host can read TD memory). Default false.
    pub dangerous_allow_debug: bool,
    /// DANGEROUS: accept evidence from the simulated backend (no TEE at all). Default false.
    pub dangerous_allow_simulated: bool,
    /// With `dangerous_allow_simulated`: the simulated roots accepted (hex SEC1 P-256 keys);
    /// empty = whatever root the evidence names.
    pub dangerous_simulated_roots: Vec<String>,
}

impl Default for AttestationPolicy {
    fn default() -> Self {
        AttestationPolicy {
            images: Vec::new(),
            allowed_compose_hashes: Vec::new(),
            allowed_app_ids: Vec::new(),
            min_tcb_status: TcbStatus::UpToDate,
            allowed_advisory_ids: Vec::new(),
            max_quote_age_secs: None,
            nonce: None,
            expected_signer: None,
            expected_provider: None,
            report_data_layout: ReportDataLayout::Native,
            require_event_log: true,
            require_gpu: false,
            gpu_count: None,
            allowed_gpu_driver_versions: Vec::new(),
            allowed_gpu_vbios_versions: Vec::new(),
            require_gpu_ocsp: false,
            dangerous_any_image: false,
            dangerous_allow_debug: false,
            dangerous_allow_simulated: false,
            dangerous_simulated_roots: Vec::new(),
        }
    }
}

impl AttestationPolicy {
    /// Parses TOML.
    pub fn from_toml(s: &str) -> Result<Self> {
        toml::from_str::<Self>(s)
            .map_err(|e| Error::InvalidPolicy(e.to_string()))?
            .validated()
    }

    /// Parses JSON.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str::<Self>(s)
            .map_err(|e| Error::InvalidPolicy(e.to_string()))?
            .validated()
    }

    /// Loads `.toml` or `.json` (by extension; otherwise tries JSON then TOML).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read policy", path, e))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml(&text),
            Some("json") => Self::from_json(&text),
            _ => Self::from_json(&text).or_else(|_| Self::from_toml(&text)),
        }
    }

    /// Whether the allow-list (images, compose hashes, app ids) names anything.
    pub fn has_allowlist(&self) -> bool {
        !(self.images.is_empty() && self.allowed_compose_hashes.is_empty() && self.allowed_app_ids.is_empty())
    }

    /// The same policy with a per-request nonce.
    pub fn with_nonce(mut self, nonce: [u8; 32]) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// SHA-256 of the canonical JSON form: the "policy hash" in verifier cache keys.
    pub fn digest(&self) -> [u8; 32] {
        // Serialising a plain struct of strings, numbers and options cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(json).into()
    }

    fn validated(self) -> Result<Self> {
        let hexlen = |field: String, v: &str, n: usize| -> Result<()> {
            let raw = v.trim_start_matches("0x");
            match hex::decode(raw) {
                Ok(b) if b.len() == n => Ok(()),
                Ok(b) => Err(Error::InvalidPolicy(format!(
                    "{field} is {} bytes, expected {n}",
                    b.len()
                ))),
                Err(e) => Err(Error::InvalidPolicy(format!("{field} is not hex: {e}"))),
            }
        };
        for (i, img) in self.images.iter().enumerate() {
            // An image that pins nothing matches every TD, which would turn the allow-list rule
            // (`measurements.allowlist`) into a formality.
            if [&img.mrtd, &img.rtmr0, &img.rtmr1, &img.rtmr2]
                .iter()
                .all(|r| r.is_none())
            {
                return Err(Error::InvalidPolicy(format!(
                    "images[{i}] ({}) pins no register: set at least one of mrtd, rtmr0, rtmr1, rtmr2",
                    img.name
                )));
            }
            for (name, v) in [
                ("mrtd", &img.mrtd),
                ("rtmr0", &img.rtmr0),
                ("rtmr1", &img.rtmr1),
                ("rtmr2", &img.rtmr2),
            ] {
                if let Some(v) = v {
                    hexlen(format!("images[{i}].{name}"), v, 48)?;
                }
            }
        }
        for (i, h) in self.allowed_compose_hashes.iter().enumerate() {
            hexlen(format!("allowed_compose_hashes[{i}]"), h, 32)?;
        }
        for (i, a) in self.allowed_app_ids.iter().enumerate() {
            let raw = a.trim_start_matches("0x");
            if raw.is_empty() || hex::decode(raw).is_err() {
                return Err(Error::InvalidPolicy(format!(
                    "allowed_app_ids[{i}] is not hex: {a:?}"
                )));
            }
        }
        if self.gpu_count == Some(0) || self.gpu_count.is_some_and(|n| n as usize > crate::MAX_GPUS) {
            return Err(Error::InvalidPolicy(format!(
                "gpu_count must be 1 to {} (or unset for any number)",
                crate::MAX_GPUS
            )));
        }
        if self.min_tcb_status == TcbStatus::Revoked {
            return Err(Error::InvalidPolicy(
                "min_tcb_status = \"Revoked\" is never acceptable; use OutOfDateConfigurationNeeded at worst"
                    .into(),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_typos() {
        let p = AttestationPolicy::from_toml(
            "min_tcb_status = \"OutOfDate\"\nallowed_advisory_ids = [\"INTEL-SA-01192\"]\n[[images]]\nname = \"x\"\nmrtd = \"00\"\n",
        );
        assert!(matches!(p, Err(Error::InvalidPolicy(m)) if m.contains("images[0].mrtd is 1 bytes")));
        let p = AttestationPolicy::from_toml("min_tcb_status = \"OutOfDate\"\n").unwrap();
        assert_eq!(p.min_tcb_status, TcbStatus::OutOfDate);
        assert!(p.require_event_log);
        let typo = AttestationPolicy::from_toml("dangerous_allow_simulatd = true\n");
        assert!(matches!(typo, Err(Error::InvalidPolicy(m)) if m.contains("unknown field")));
        assert!(TcbStatus::UpToDate < TcbStatus::OutOfDate);
        assert_ne!(p.digest(), AttestationPolicy::default().digest());
    }

    #[test]
    fn an_image_that_pins_no_register_is_not_an_allow_list() {
        // `[[images]] name = "x"` matches every TD: with it, the allow-list rule (issue 9 item 10)
        // would pass any genuine TD running any code. It must be refused when the policy loads.
        let e = AttestationPolicy::from_toml("[[images]]\nname = \"anything\"\n").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidPolicy(m) if m.contains("images[0]") && m.contains("pins no register")),
            "{e}"
        );
        let e = AttestationPolicy::from_json(r#"{"images": [{"name": "x", "mrtd": null}]}"#).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidPolicy(m) if m.contains("pins no register")),
            "{e}"
        );
        // App ids are hex like compose hashes: a typo must not silently never match.
        let e = AttestationPolicy::from_toml("allowed_app_ids = [\"not hex\"]\n").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidPolicy(m) if m.contains("allowed_app_ids[0]")),
            "{e}"
        );
        // One register is enough (the operator's choice what to pin).
        let mrtd = "00".repeat(48);
        AttestationPolicy::from_toml(&format!("[[images]]\nname = \"x\"\nmrtd = \"{mrtd}\"\n")).unwrap();
    }
}
