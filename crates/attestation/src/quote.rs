//! TDX quote parsing (v4 and v5; TD 1.0, TD 1.5 and TD 1.5-ex bodies) on top of dcap-qvl's decoder.
//!
//! Layout of a v4 quote (Intel TDX DCAP Quote Generation Library, "Quote Format"):
//! header 0..48 · TD report body 48..632 (REPORTDATA at 568..632) · auth-data length (u32) ·
//! ECDSA signature 64 · attestation key 64 · certification data (type 6: QE report 384, QE report
//! signature 64, QE auth data, inner certification data type 5 = PEM PCK chain).
//! A v5 quote inserts a 6-byte body descriptor (type u16, size u32) after the header.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Bytes in a quote header.
pub(crate) const HEADER_LEN: usize = 48;
/// TEE type of TDX in the quote header.
pub(crate) const TEE_TYPE_TDX: u32 = 0x81;

/// A 48-byte SHA-384 measurement register (MRTD, RTMRn, MRCONFIGID...).
pub type Measurement = [u8; 48];

/// Which TD report body a quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdBodyKind {
    /// TDX 1.0 body (584 bytes): quote v4, or v5 body type 2.
    Td10,
    /// TDX 1.5 body (648 bytes): v5 body type 3.
    Td15,
    /// TDX 1.5 "ex" body (885 bytes): v5 body type 4.
    Td15Ex,
}

/// The parsed fields of a TDX quote a verifier looks at. Parsing checks structure only; it proves
/// nothing until [`crate::Verifier`] has checked the signature chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdQuote {
    /// Quote format version (4 or 5).
    pub version: u16,
    /// Body kind.
    pub body: TdBodyKind,
    /// QE vendor id (Intel's is `939a7233f79c4ca9940a0db3957f0607`).
    pub qe_vendor_id: [u8; 16],
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: the TDX module measurement.
    pub mr_seam: Measurement,
    /// TD_ATTRIBUTES (byte 0 bit 0 = DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD: the initial TD memory measurement (firmware image).
    pub mrtd: Measurement,
    /// MRCONFIGID (dstack: `0x01 || compose_hash`).
    pub mr_config_id: Measurement,
    /// MROWNER.
    pub mr_owner: Measurement,
    /// MROWNERCONFIG.
    pub mr_owner_config: Measurement,
    /// RTMR0..RTMR3.
    pub rtmr: [Measurement; 4],
    /// REPORTDATA: 64 bytes chosen by the TD.
    pub report_data: [u8; 64],
    /// The inner certification-data type (5 = PEM PCK chain).
    pub cert_type: u16,
    /// The inner certification data (for type 5, the PEM PCK chain).
    pub cert_data: Vec<u8>,
    /// Length of the signed region (header + body descriptor + body).
    pub signed_len: usize,
}

impl TdQuote {
    /// Parses a TDX quote; trailing bytes after the auth data are ignored (some producers pad).
    pub fn parse(raw: &[u8]) -> Result<Self> {
        if raw.len() < HEADER_LEN {
            return Err(Error::MalformedQuote {
                field: "header",
                reason: format!("{} bytes, a header alone is {HEADER_LEN}", raw.len()),
            });
        }
        let q = dcap_qvl::quote::Quote::parse(raw).map_err(|e| Error::MalformedQuote {
            field: "structure",
            reason: e.to_string(),
        })?;
        if q.header.tee_type != TEE_TYPE_TDX {
            return Err(Error::UnsupportedQuote(format!(
                "tee_type {:#x} is not TDX (0x81); SGX quotes are not accepted",
                q.header.tee_type
            )));
        }
        let (body, td10) = match &q.report {
            dcap_qvl::quote::Report::TD10(r) => (TdBodyKind::Td10, r),
            dcap_qvl::quote::Report::TD15(r) => (TdBodyKind::Td15, &r.base),
            dcap_qvl::quote::Report::TD15Ex(r) => (TdBodyKind::Td15Ex, &r.base.base),
            dcap_qvl::quote::Report::SgxEnclave(_) => {
                return Err(Error::UnsupportedQuote(
                    "SGX enclave report in a TDX quote".into(),
                ));
            }
        };
        Ok(TdQuote {
            version: q.header.version,
            body,
            qe_vendor_id: q.header.qe_vendor_id,
            tee_tcb_svn: td10.tee_tcb_svn,
            mr_seam: td10.mr_seam,
            td_attributes: td10.td_attributes,
            xfam: td10.xfam,
            mrtd: td10.mr_td,
            mr_config_id: td10.mr_config_id,
            mr_owner: td10.mr_owner,
            mr_owner_config: td10.mr_owner_config,
            rtmr: [td10.rt_mr0, td10.rt_mr1, td10.rt_mr2, td10.rt_mr3],
            report_data: td10.report_data,
            cert_type: q.inner_cert_type(),
            cert_data: q.inner_cert_data().to_vec(),
            signed_len: q.signed_length(),
        })
    }

    /// Whether the TD runs in debug mode (TD_ATTRIBUTES.DEBUG): its memory is readable by the host.
    pub fn is_debug(&self) -> bool {
        self.td_attributes.first().is_some_and(|b| b & 0x01 != 0)
    }

    /// The platform's FMSPC from the PCK leaf certificate in the certification data (upper-case hex).
    pub fn fmspc(&self) -> Result<String> {
        if self.cert_type != 5 {
            return Err(Error::UnsupportedQuote(format!(
                "certification data type {} carries no PCK chain (type 5 expected)",
                self.cert_type
            )));
        }
        let ext = dcap_qvl::intel::parse_pck_extension_from_pem(&self.cert_data).map_err(|e| {
            Error::MalformedQuote {
                field: "certification data (PCK certificate)",
                reason: e.to_string(),
            }
        })?;
        Ok(hex::encode_upper(ext.fmspc))
    }

    /// Whether the PCK leaf was issued by Intel's "Platform" CA (else "Processor").
    pub fn pck_ca(&self) -> Result<&'static str> {
        let pem = pem_first_cert(&self.cert_data)?;
        let ca = dcap_qvl::intel::pck_ca(&pem).map_err(|e| Error::MalformedQuote {
            field: "certification data (PCK certificate)",
            reason: e.to_string(),
        })?;
        Ok(ca.as_id_str())
    }
}

/// DER of the first certificate in a PEM chain.
fn pem_first_cert(pem: &[u8]) -> Result<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let bad = |reason: &str| Error::MalformedQuote {
        field: "certification data (PCK certificate)",
        reason: reason.to_owned(),
    };
    let start = text.find(begin).ok_or_else(|| bad("no PEM certificate"))?;
    let rest = text
        .get(start.saturating_add(begin.len())..)
        .ok_or_else(|| bad("truncated PEM"))?;
    let stop = rest
        .find(end)
        .ok_or_else(|| bad("unterminated PEM certificate"))?;
    let b64: String = rest
        .get(..stop)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&e.to_string()))
}

/// Decodes a quote given as raw bytes, ASCII hex (optional `0x`, whitespace ignored) or base64.
/// Binary quotes start with version 4 or 5 as little-endian u16, which is never valid hex text.
pub fn decode_quote_bytes(input: &[u8]) -> Result<Vec<u8>> {
    if let [v, 0, ..] = input
        && (*v == 4 || *v == 5)
    {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(input).map_err(|_| Error::Decode {
        what: "quote",
        reason: "neither a binary quote nor text".into(),
    })?;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let hex_part = compact.strip_prefix("0x").unwrap_or(&compact);
    if !hex_part.is_empty() && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(hex_part).map_err(|e| Error::Decode {
            what: "quote hex",
            reason: e.to_string(),
        });
    }
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| Error::Decode {
            what: "quote (hex or base64)",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_variants() {
        assert_eq!(decode_quote_bytes(b"0x0400aa").unwrap(), vec![4, 0, 0xaa]);
        assert_eq!(decode_quote_bytes(b"04 00\n").unwrap(), vec![4, 0]);
        assert_eq!(decode_quote_bytes(&[4, 0, 2, 0]).unwrap(), vec![4, 0, 2, 0]);
        assert_eq!(decode_quote_bytes(b"BAA=").unwrap(), vec![4, 0]);
        assert!(decode_quote_bytes(b"not a quote!").is_err());
    }

    #[test]
    fn short_input_is_typed_error() {
        assert!(matches!(
            TdQuote::parse(&[4, 0, 2]),
            Err(Error::MalformedQuote { field: "header", .. })
        ));
    }
}
