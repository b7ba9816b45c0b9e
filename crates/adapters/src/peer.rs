//! Checking the other side's TEE: fresh evidence bound to our nonce, under our policy, whose bound signer is
//! the one the chain names for that service. The provider checks the broker with it and the broker checks
//! the provider: mutual, and no shared secret.

use alloy_primitives::Address;
use zg_attestation::{AttestationPolicy, Collateral, Evidence, Timestamp, VerificationReport, Verifier};

use crate::error::{Error, Result};

/// How a peer's evidence is judged: the operator's policy (measurement allow-list, TCB, GPU, and whether
/// simulated evidence is acceptable, `dangerous_allow_simulated`) and the DCAP collateral to check it with.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// The attestation policy; its `nonce` and `expected_signer` are set per check.
    pub policy: AttestationPolicy,
    /// DCAP collateral for real TDX quotes (`None`: only simulated evidence can pass, if allowed).
    pub collateral: Option<Collateral>,
}

/// A peer whose evidence passed.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    /// The peer's service address.
    pub peer: Address,
    /// Its TEE signer, bound in the evidence and equal to the on-chain one.
    pub signer: Address,
    /// Whether the evidence came from the simulated backend (passes only when the policy allows it).
    pub simulated: bool,
    /// The full report.
    pub report: VerificationReport,
}

/// Verifies `evidence_document` (the JSON a TEE's `fresh(nonce)` returns) of `peer` against `nonce` (ours,
/// fresh) and `on_chain_signer` (the `teeSignerAddress` its service registers), at `now`.
///
/// Fails closed: any failing check, evidence that binds no key-binding document, a bound signer other than
/// the on-chain one, or simulated evidence under a policy that does not allow it.
pub fn verify_peer(
    verifier: &Verifier,
    peer_policy: &PeerPolicy,
    peer: Address,
    evidence_document: &[u8],
    nonce: [u8; 32],
    on_chain_signer: Address,
    now: Timestamp,
) -> Result<VerifiedPeer> {
    let evidence = Evidence::from_document(evidence_document).map_err(|e| Error::Evidence {
        peer,
        reason: e.to_string(),
    })?;
    let mut policy = peer_policy.policy.clone().with_nonce(nonce);
    policy.expected_signer = Some(on_chain_signer);
    let report = (*verifier.verify(&evidence, &policy, peer_policy.collateral.as_ref(), now)).clone();
    if report.simulated && !peer_policy.policy.dangerous_allow_simulated {
        return Err(Error::SimulatedRefused { peer });
    }
    if !report.passed() {
        let check = report
            .first_failure()
            .map(|c| format!("{}: expected {}, found {}", c.name, c.expected, c.found))
            .unwrap_or_else(|| "verdict fail".into());
        return Err(Error::Attestation { peer, check });
    }
    let binding = report.binding.clone().ok_or_else(|| Error::Attestation {
        peer,
        check: "the quote binds no key-binding document (native REPORTDATA layout expected)".into(),
    })?;
    if binding.signer_address != on_chain_signer {
        // The policy checks this too; the explicit check keeps the invariant local.
        return Err(Error::Attestation {
            peer,
            check: format!(
                "signer: expected on-chain teeSignerAddress {on_chain_signer}, found bound {}",
                binding.signer_address
            ),
        });
    }
    Ok(VerifiedPeer {
        peer,
        signer: binding.signer_address,
        simulated: report.simulated,
        report,
    })
}
