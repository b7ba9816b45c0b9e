//! GPU evidence from NVML (feature `nvml`): `nvmlDeviceGetConfComputeGpuAttestationReport` with the
//! caller's nonce and `nvmlDeviceGetConfComputeGpuCertificate` for the device chain, on every GPU.
//! `nvml-wrapper` loads `libnvidia-ml.so` when [`NvmlGpu::new`] runs, so a binary built with this
//! feature starts normally on machines without a GPU or driver: `new` just returns an error.

use super::{GpuDeviceEvidence, GpuEvidence, GpuProducer, x509};
use crate::{Error, Result};
use nvml_wrapper::Nvml;

fn fail(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "nvml",
        reason: reason.into(),
    }
}

/// Confidential-computing GPUs through NVML.
pub struct NvmlGpu {
    nvml: Nvml,
    count: u32,
}

impl std::fmt::Debug for NvmlGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpu").field("gpus", &self.count).finish()
    }
}

impl NvmlGpu {
    /// Loads NVML and checks that there is at least one GPU and that confidential computing is on
    /// (`nvmlSystemGetConfComputeState`: CC feature enabled, production environment).
    pub fn new() -> Result<Self> {
        let nvml = Nvml::init().map_err(|e| fail(format!("loading libnvidia-ml.so: {e}")))?;
        let count = nvml
            .device_count()
            .map_err(|e| fail(format!("device count: {e}")))?;
        if count == 0 {
            return Err(fail("NVML sees no GPU"));
        }
        if usize::try_from(count).map_or(true, |c| c > super::MAX_GPUS) {
            return Err(fail(format!("{count} GPUs, more than {}", super::MAX_GPUS)));
        }
        for i in 0..count {
            let d = nvml
                .device_by_index(i)
                .map_err(|e| fail(format!("GPU {i}: {e}")))?;
            let on = d
                .is_cc_enabled()
                .map_err(|e| fail(format!("GPU {i}: confidential-computing state: {e}")))?;
            if !on {
                return Err(fail(format!(
                    "GPU {i}: confidential computing is off (nvidia-smi conf-compute -srs 1 after enabling CC mode)"
                )));
            }
        }
        Ok(NvmlGpu { nvml, count })
    }

    /// Number of GPUs.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl GpuProducer for NvmlGpu {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn evidence(&self, nonce: &[u8; 32]) -> Result<GpuEvidence> {
        let mut devices = Vec::new();
        for i in 0..self.count {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| fail(format!("GPU {i}: {e}")))?;
            let report = d
                .confidential_compute_gpu_attestation_report(*nonce)
                .map_err(|e| fail(format!("GPU {i}: attestation report: {e}")))?;
            let cert = d
                .confidential_compute_gpu_certificate()
                .map_err(|e| fail(format!("GPU {i}: certificate chain: {e}")))?;
            // The attestation chain is concatenated PEM text (leaf first), as nvtrust reads it.
            let pem = String::from_utf8_lossy(&cert.attestation_cert_chain);
            let cert_chain =
                x509::pem_certs(&pem).map_err(|e| fail(format!("GPU {i}: certificate chain: {e}")))?;
            devices.push(GpuDeviceEvidence {
                report: report.attestation_report,
                cert_chain,
            });
        }
        Ok(GpuEvidence {
            arch: "HOPPER".into(),
            devices,
            rims: Vec::new(),
            ocsp: Vec::new(),
        })
    }
}
