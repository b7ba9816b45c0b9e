//! The Intel DCAP stage, run by dcap-qvl, with its failures mapped onto named checks.

use crate::{Collateral, Timestamp};

/// The DCAP verification steps in the order dcap-qvl performs them, with what each requires.
pub(crate) const STEPS: [(&str, &str); 12] = [
    (
        "collateral.crl",
        "root CA and PCK CRLs signed by Intel and current",
    ),
    (
        "quote.header",
        "quote v4/v5, TDX, ECDSA-P256 key, Intel QE vendor id",
    ),
    (
        "collateral.tcb_info",
        "TCB info signed by Intel's TCB signing key and current at the given time",
    ),
    (
        "collateral.qe_identity",
        "QE identity signed by Intel and current at the given time",
    ),
    (
        "quote.pck_chain",
        "PCK certificate chains to the Intel SGX Root CA and is not revoked",
    ),
    ("quote.qe_report_signature", "QE report signed by the PCK key"),
    (
        "quote.qe_report_data",
        "QE report data = sha256(attestation key || QE auth data)",
    ),
    (
        "quote.qe_identity",
        "QE report matches Intel's QE identity (MRSIGNER, ISVPRODID, ISVSVN)",
    ),
    ("quote.signature", "TD report signed by the attestation key"),
    (
        "tcb.level",
        "platform (FMSPC, CPUSVN, PCESVN, TEE_TCB_SVN, TDX module) matches a TCB level",
    ),
    ("tcb.not_revoked", "TCB status is not Revoked"),
    (
        "td.attributes",
        "no debug, no profiling, SEPT_VE_DISABLE set, not migratable",
    ),
];

/// What dcap-qvl established for a quote that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DcapOk {
    pub(crate) status: String,
    pub(crate) advisory_ids: Vec<String>,
    pub(crate) platform_status: String,
    pub(crate) qe_status: String,
    pub(crate) window: (Timestamp, Timestamp),
}

/// A DCAP failure: the index into [`STEPS`] (None = unclassified) and dcap-qvl's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DcapErr {
    pub(crate) step: Option<usize>,
    pub(crate) message: String,
}

struct AcceptAll;

impl dcap_qvl::Policy for AcceptAll {
    fn validate(&self, _claims: &dcap_qvl::QuoteClaims) -> anyhow::Result<()> {
        // Acceptance is decided by our AttestationPolicy, check by check, after DCAP.
        Ok(())
    }
}

/// Runs the full DCAP verification against `root_ca_der`.
pub(crate) fn verify(
    root_ca_der: &[u8],
    quote: &[u8],
    collateral: &Collateral,
    now: Timestamp,
    allow_debug: bool,
) -> Result<DcapOk, DcapErr> {
    let verifier = dcap_qvl::verify::QuoteVerifier::new(root_ca_der.to_vec()).allow_debug(allow_debug);
    match verifier.verify_with_policy(quote, collateral.inner.clone(), now.as_secs(), &AcceptAll) {
        Ok(claims) => Ok(DcapOk {
            status: claims.tcb.status.to_string(),
            advisory_ids: claims.tcb.advisory_ids.clone(),
            platform_status: claims.platform.tcb_level.tcb_status.to_string(),
            qe_status: claims.qe.tcb_level.tcb_status.to_string(),
            window: (
                Timestamp(claims.latest_issue_date),
                Timestamp(claims.earliest_expiration_date),
            ),
        }),
        Err(e) => {
            let message = format!("{e:#}");
            Err(DcapErr {
                step: classify(&message),
                message,
            })
        }
    }
}

/// Maps a dcap-qvl error message onto the step that raised it.
pub(crate) fn classify(msg: &str) -> Option<usize> {
    let has = |needles: &[&str]| needles.iter().any(|n| msg.contains(n));
    let name = if has(&["root CA CRL", "PCK CRL", "Failed to load root ca"]) {
        "collateral.crl"
    } else if has(&[
        "Failed to decode quote",
        "Unsupported DCAP quote version",
        "Unknown QE vendor",
        "Unsupported TEE type",
        "must have version",
        "attestation key type",
    ]) {
        "quote.header"
    } else if has(&["TCBInfo", "TcbInfo", "TCB Info", "tcb_info"]) {
        "collateral.tcb_info"
    } else if has(&[
        "QE Identity issue",
        "QE Identity expired",
        "QeIdentity",
        "qe_identity",
        "QE Identity signer",
        "QE Identity id/version",
        "Certificate chain is too short for QE",
    ]) {
        "collateral.qe_identity"
    } else if has(&["Signature is invalid for qe_report", "Failed to decode QE report"]) {
        "quote.qe_report_signature"
    } else if has(&["QE report hash mismatch", "QE auth data length"]) {
        "quote.qe_report_data"
    } else if has(&[
        "QE MRSIGNER",
        "QE ISVPRODID",
        "QE MISCSELECT",
        "QE ATTRIBUTES",
        "QE ISVSVN",
        "QE report validation",
        "No TCB levels found in QE",
    ]) {
        "quote.qe_identity"
    } else if has(&["ISV enclave report signature", "signed quote scope"]) {
        "quote.signature"
    } else if has(&[
        "Fmspc mismatch",
        "No matching TCB level",
        "TDX module",
        "non-TDX TCB info",
        "current TDX TCB",
        "Unrecognized TCB status",
    ]) {
        "tcb.level"
    } else if has(&["Revoked"]) {
        "tcb.not_revoked"
    } else if has(&[
        "Debug mode",
        "profiling",
        "SEPT_VE_DISABLE",
        "migration",
        "SERVTD_EXT",
        "Reserved bits",
        "MR service TD",
        "TD attributes",
    ]) {
        "td.attributes"
    } else if has(&[
        "PCK",
        "certificate chain",
        "Certificate chain",
        "cert format",
        "CertNotValidYet",
        "CertExpired",
    ]) {
        "quote.pck_chain"
    } else {
        return None;
    };
    STEPS.iter().position(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let name = |m: &str| classify(m).and_then(|i| STEPS.get(i)).map(|s| s.0);
        assert_eq!(name("TCBInfo expired"), Some("collateral.tcb_info"));
        assert_eq!(
            name("ISV enclave report signature is invalid"),
            Some("quote.signature")
        );
        assert_eq!(
            name("Signature is invalid for qe_report in quote"),
            Some("quote.qe_report_signature")
        );
        assert_eq!(name("No matching TCB level found"), Some("tcb.level"));
        assert_eq!(
            name("Failed to verify certificate chain: CertNotValidYet"),
            Some("quote.pck_chain")
        );
        assert_eq!(name("something new"), None);
    }
}
