#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod collateral;
mod dcap;
mod error;
mod eventlog;
mod evidence;
mod gpu;
#[cfg(feature = "pccs")]
mod pccs;
mod policy;
mod producer;
mod quote;
mod report;
mod reportdata;
mod time;
mod verify;

pub use crate::{
    collateral::{CachedCollateral, Collateral, CollateralKey, CollateralSource, DirectoryCollateral},
    error::{Error, Result},
    eventlog::{
        AppInfo, CcelTable, DSTACK_RUNTIME_EVENT_TYPE, DigestCheck, EventLog, MAX_EVENTS, NamedEvent,
        TdxEvent, extend as extend_rtmr, runtime_event_digest,
    },
    evidence::{Backend, Evidence, EvidenceProducer},
    gpu::{
        CachedGpuCollateral, DirectoryGpuCollateral, GpuCollateral, GpuCollateralSource, GpuDeviceEvidence,
        GpuEvidence, GpuProducer, GpuRoots, GpuSummary, MAX_GPUS, MeasurementBlock, NVIDIA_DEVICE_ROOT_PEM,
        NVIDIA_RIM_ROOT_PEM, Rim, RimMeasurement, SIMULATED_GPU_ROOT_CN, SIMULATED_RIM_ROOT_CN, SimulatedGpu,
        SpdmReport, decode_report,
    },
    gpu::{
        MAX_GPU_EVIDENCE_BYTES, MAX_STAPLED_OCSP, MAX_STAPLED_RIMS,
        rim::MAX_RIM_BYTES,
        simulated::SIMULATED_DRIVER_VERSION,
        spdm::{MAX_REPORT_LEN, SPDM_REQUEST_LEN, SPDM_SIGNATURE_LEN, opaque as spdm_opaque},
    },
    policy::{AttestationPolicy, ImagePolicy, TcbStatus},
    producer::dstack::{DerivedKey, DstackProducer},
    producer::simulated::{SIMULATED_QE_VENDOR_ID, SimulatedMeasurements, SimulatedTee},
    producer::tdx::{TdxPaths, TdxProducer},
    quote::{Measurement, TdBodyKind, TdQuote, decode_quote_bytes},
    report::{Check, SIMULATED_BANNER, Verdict, VerificationReport},
    reportdata::{KeyBinding, NATIVE_TAG, NATIVE_VERSION, ReportData, ReportDataLayout},
    time::Timestamp,
    verify::{INTEL_SGX_ROOT_CA_DER, Verifier, verify},
};

#[cfg(feature = "pccs")]
pub use crate::pccs::{INTEL_PCS_URL, PccsCollateral};

#[cfg(feature = "nvml")]
pub use crate::gpu::nvml::NvmlGpu;

#[cfg(feature = "nvidia-rim")]
pub use crate::gpu::{NVIDIA_RIM_SERVICE_URL, NvidiaRimService};
