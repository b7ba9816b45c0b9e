//! The NVIDIA GPU "attestation report": an SPDM 1.1 GET_MEASUREMENTS request (37 bytes) followed
//! by the MEASUREMENTS response (measurement blocks, responder nonce, opaque TLVs, a 96-byte
//! ECDSA P-384 signature). Layout: `testdata/gpu/README.md` §3. Every length is checked against
//! the bytes that are really there; nothing here trusts a length field.

use crate::{Error, Result};

/// Size of the GET_MEASUREMENTS request that starts the report.
pub const SPDM_REQUEST_LEN: usize = 37;
/// Size of the raw `r‖s` P-384 signature that ends the report.
pub const SPDM_SIGNATURE_LEN: usize = 96;
/// Largest report accepted (NVML's buffer is 8 KiB).
pub const MAX_REPORT_LEN: usize = 0x2000;

/// Opaque-data TLV type numbers (names from NVIDIA's nvtrust table).
pub mod opaque {
    /// Driver version (ASCII, NUL padded).
    pub const DRIVER_VERSION: u16 = 3;
    /// GPU info.
    pub const GPU_INFO: u16 = 4;
    /// VBIOS version (8 bytes, see [`super::SpdmReport::vbios_version`]).
    pub const VBIOS_VERSION: u16 = 6;
    /// NVDEC0 status (0x55 disabled, 0xAA enabled).
    pub const NVDEC0_STATUS: u16 = 11;
    /// Measurement count per block (u32 each).
    pub const MSRSCNT: u16 = 12;
    /// CPR info.
    pub const CPRINFO: u16 = 13;
    /// Board id.
    pub const BOARD_ID: u16 = 14;
    /// Chip SKU (ASCII).
    pub const CHIP_SKU: u16 = 15;
    /// Chip SKU modifier (ASCII).
    pub const CHIP_SKU_MOD: u16 = 16;
    /// Project (ASCII, e.g. `1010`).
    pub const PROJECT: u16 = 17;
    /// Project SKU (ASCII, e.g. `0200`).
    pub const PROJECT_SKU: u16 = 18;
    /// Project SKU modifier.
    pub const PROJECT_SKU_MOD: u16 = 19;
    /// Firmware id (48 bytes), bound to the leaf certificate's TCG DICE extension.
    pub const FWID: u16 = 20;
    /// Protected PCIe status.
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
}

/// One SPDM measurement block (DMTF format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// SPDM index, 1-based.
    pub index: u8,
    /// MeasurementSpecification (1 = DMTF).
    pub specification: u8,
    /// DMTFSpecMeasurementValueType.
    pub value_type: u8,
    /// The measurement (a SHA-384 digest on Hopper).
    pub value: Vec<u8>,
}

/// A parsed GPU attestation report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdmReport {
    /// SPDM version of the request (0x11 = 1.1).
    pub version: u8,
    /// The requester's (the verifier's) nonce, covered by the signature.
    pub request_nonce: [u8; 32],
    /// The GPU's own nonce.
    pub responder_nonce: [u8; 32],
    /// Measurement blocks in report order.
    pub blocks: Vec<MeasurementBlock>,
    /// Opaque TLVs `(type, value)` in report order; each type appears once.
    pub opaque: Vec<(u16, Vec<u8>)>,
    /// The signed prefix length (everything but the signature).
    pub signed_len: usize,
    /// Raw `r‖s` signature.
    pub signature: [u8; SPDM_SIGNATURE_LEN],
}

fn bad(field: &'static str, reason: impl Into<String>) -> Error {
    Error::MalformedGpuEvidence {
        field,
        reason: reason.into(),
    }
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| bad(field, "length overflows"))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| {
            bad(
                field,
                format!(
                    "needs {n} bytes at offset {}, only {} left",
                    self.pos,
                    self.buf.len().saturating_sub(self.pos)
                ),
            )
        })?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?.first().copied().unwrap_or_default())
    }
    fn u16(&mut self, field: &'static str) -> Result<u16> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or_default(),
            b.get(1).copied().unwrap_or_default(),
        ]))
    }
    fn u24(&mut self, field: &'static str) -> Result<usize> {
        let b = self.take(3, field)?;
        Ok(b.iter().rev().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    }
    fn array32(&mut self, field: &'static str) -> Result<[u8; 32]> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32, field)?);
        Ok(out)
    }
}

impl SpdmReport {
    /// Parses a report (binary, not hex).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_REPORT_LEN {
            return Err(bad(
                "report",
                format!(
                    "{} bytes, more than the {MAX_REPORT_LEN} NVML returns",
                    bytes.len()
                ),
            ));
        }
        let mut c = Cursor { buf: bytes, pos: 0 };
        let version = c.u8("request.version")?;
        let code = c.u8("request.code")?;
        if code != 0xE0 {
            return Err(bad(
                "request.code",
                format!("0x{code:02x}, expected 0xE0 (GET_MEASUREMENTS)"),
            ));
        }
        let param1 = c.u8("request.param1")?;
        if param1 & 1 == 0 {
            return Err(bad("request.param1", "the request did not ask for a signature"));
        }
        let _param2 = c.u8("request.param2")?;
        let request_nonce = c.array32("request.nonce")?;
        let _slot = c.u8("request.slot")?;
        let rversion = c.u8("response.version")?;
        if rversion != version {
            return Err(bad(
                "response.version",
                format!("0x{rversion:02x} differs from the request's 0x{version:02x}"),
            ));
        }
        let rcode = c.u8("response.code")?;
        if rcode != 0x60 {
            return Err(bad(
                "response.code",
                format!("0x{rcode:02x}, expected 0x60 (MEASUREMENTS)"),
            ));
        }
        let _p1 = c.u8("response.param1")?;
        let _p2 = c.u8("response.param2")?;
        let count = c.u8("response.number_of_blocks")?;
        let record_len = c.u24("response.record_length")?;
        let record = c.take(record_len, "response.measurement_record")?;
        let mut r = Cursor { buf: record, pos: 0 };
        let mut blocks = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let index = r.u8("measurement.index")?;
            let specification = r.u8("measurement.specification")?;
            let size = r.u16("measurement.size")?;
            let body = r.take(usize::from(size), "measurement.value")?;
            let mut b = Cursor { buf: body, pos: 0 };
            let value_type = b.u8("measurement.dmtf_type")?;
            let vsize = b.u16("measurement.dmtf_size")?;
            let value = b.take(usize::from(vsize), "measurement.dmtf_value")?.to_vec();
            if b.pos != body.len() {
                return Err(bad(
                    "measurement.size",
                    format!("block {index}: {} bytes declared, {} used", body.len(), b.pos),
                ));
            }
            if blocks.iter().any(|x: &MeasurementBlock| x.index == index) {
                return Err(bad("measurement.index", format!("index {index} appears twice")));
            }
            blocks.push(MeasurementBlock {
                index,
                specification,
                value_type,
                value,
            });
        }
        if r.pos != record.len() {
            return Err(bad(
                "response.record_length",
                format!(
                    "{} blocks use {} of {} declared bytes",
                    count,
                    r.pos,
                    record.len()
                ),
            ));
        }
        let responder_nonce = c.array32("response.nonce")?;
        let opaque_len = c.u16("response.opaque_length")?;
        let opaque_bytes = c.take(usize::from(opaque_len), "response.opaque_data")?;
        let mut o = Cursor {
            buf: opaque_bytes,
            pos: 0,
        };
        let mut opaque: Vec<(u16, Vec<u8>)> = Vec::new();
        while o.pos < opaque_bytes.len() {
            let t = o.u16("opaque.type")?;
            let l = o.u16("opaque.length")?;
            let v = o.take(usize::from(l), "opaque.value")?;
            if opaque.iter().any(|(x, _)| *x == t) {
                return Err(bad("opaque.type", format!("type {t} appears twice")));
            }
            opaque.push((t, v.to_vec()));
        }
        let signed_len = c.pos;
        let rest = bytes.len().saturating_sub(signed_len);
        if rest != SPDM_SIGNATURE_LEN {
            return Err(bad(
                "signature",
                format!(
                    "{rest} bytes after the opaque data, expected exactly {SPDM_SIGNATURE_LEN} (P-384 r‖s)"
                ),
            ));
        }
        let mut signature = [0u8; SPDM_SIGNATURE_LEN];
        signature.copy_from_slice(c.take(SPDM_SIGNATURE_LEN, "signature")?);
        Ok(SpdmReport {
            version,
            request_nonce,
            responder_nonce,
            blocks,
            opaque,
            signed_len,
            signature,
        })
    }

    /// The raw value of opaque TLV `t`.
    pub fn opaque_value(&self, t: u16) -> Option<&[u8]> {
        self.opaque
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, v)| v.as_slice())
    }

    fn opaque_str(&self, t: u16) -> Option<String> {
        let v = self.opaque_value(t)?;
        let end = v.iter().rposition(|b| *b != 0).map_or(0, |p| p.saturating_add(1));
        let s = std::str::from_utf8(v.get(..end)?).ok()?;
        s.chars().all(|c| c.is_ascii_graphic()).then(|| s.to_owned())
    }

    /// Driver version (`550.90.07`): the opaque string with trailing NULs stripped.
    pub fn driver_version(&self) -> Option<String> {
        self.opaque_str(opaque::DRIVER_VERSION)
    }

    /// VBIOS version, lowercase `b3.b2.b1.b0.b4` of the 8 opaque bytes (`96.00.9f.00.01`).
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.opaque_value(opaque::VBIOS_VERSION)?;
        let b = |i: usize| v.get(i).copied();
        Some(format!(
            "{:02x}.{:02x}.{:02x}.{:02x}.{:02x}",
            b(3)?,
            b(2)?,
            b(1)?,
            b(0)?,
            b(4)?
        ))
    }

    /// Project (`1010`).
    pub fn project(&self) -> Option<String> {
        self.opaque_str(opaque::PROJECT)
    }

    /// Project SKU (`0200`).
    pub fn project_sku(&self) -> Option<String> {
        self.opaque_str(opaque::PROJECT_SKU)
    }

    /// Chip SKU (`882`).
    pub fn chip_sku(&self) -> Option<String> {
        self.opaque_str(opaque::CHIP_SKU)
    }

    /// FWID (48 bytes), absent on older firmware.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.opaque_value(opaque::FWID)
    }

    /// NVIDIA's RIM identifier for this report's driver: `NV_GPU_DRIVER_GH100_<driver>`.
    pub fn driver_rim_id(&self) -> Option<String> {
        Some(format!("NV_GPU_DRIVER_GH100_{}", self.driver_version()?))
    }

    /// NVIDIA's RIM identifier for this report's VBIOS:
    /// `NV_GPU_VBIOS_<project>_<project sku>_<chip sku>_<VBIOS without dots, upper case>`.
    pub fn vbios_rim_id(&self) -> Option<String> {
        Some(format!(
            "NV_GPU_VBIOS_{}_{}_{}_{}",
            self.project()?,
            self.project_sku()?,
            self.chip_sku()?,
            self.vbios_version()?.replace('.', "").to_ascii_uppercase()
        ))
    }

    /// The measurement of SPDM block `index` (1-based).
    pub fn measurement(&self, index: u8) -> Option<&[u8]> {
        self.blocks
            .iter()
            .find(|b| b.index == index)
            .map(|b| b.value.as_slice())
    }
}
