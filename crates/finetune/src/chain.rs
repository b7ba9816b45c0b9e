//! What the pipeline needs from FineTuningServing, as a trait: the broker implements it over zg-chain, tests
//! over [`MemChain`](crate::MemChain). This keeps the library free of any RPC stack.
//!
//! The settlement message is built and signed here: EIP-712 `VerifierMessage(string id,bytes encryptedSecret,
//! bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)` under the domain
//! `{"0G Fine-Tuning Serving", "1", chainId, FineTuningServing}` (contracts/src/FineTuningServing.sol).

use std::future::Future;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use k256::ecdsa::SigningKey;

use crate::error::{ChainFailure, Error, Result};

sol! {
    /// The struct the TEE signs to settle one task.
    struct VerifierMessage {
        string id;
        bytes encryptedSecret;
        bytes modelRootHash;
        uint256 nonce;
        uint256 taskFee;
        address user;
    }
}

/// A customer's fine-tuning sub-account with this provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubAccount {
    /// Balance, neuron.
    pub balance: U256,
    /// Part of the balance being refunded.
    pub pending_refund: U256,
    /// Last settlement nonce.
    pub nonce: U256,
    /// Whether the customer acknowledged this provider's TEE signer.
    pub acknowledged: bool,
}

/// A deliverable as recorded on chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliverableState {
    /// The root the provider recorded.
    pub model_root_hash: Bytes,
    /// The customer acknowledged it.
    pub acknowledged: bool,
    /// It was settled (with or without the key).
    pub settled: bool,
    /// The key was revealed (`encryptedSecret` non-empty).
    pub secret_revealed: bool,
}

/// A signed `settleFees` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Task id.
    pub id: String,
    /// ECIES-wrapped key (empty for a penalty settlement).
    pub encrypted_secret: Bytes,
    /// The deliverable's root.
    pub model_root_hash: Bytes,
    /// Above the sub-account's nonce.
    pub nonce: U256,
    /// The full task fee (the contract applies the penalty percentage when unacknowledged).
    pub task_fee: U256,
    /// Customer.
    pub user: Address,
    /// 65-byte TEE signature over the EIP-712 digest.
    pub signature: Bytes,
}

/// Where the settlement signature is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementDomain {
    /// Chain id.
    pub chain_id: u64,
    /// FineTuningServing address.
    pub contract: Address,
}

impl SettlementDomain {
    fn eip712(&self) -> Eip712Domain {
        eip712_domain! {
            name: "0G Fine-Tuning Serving",
            version: "1",
            chain_id: self.chain_id,
            verifying_contract: self.contract,
        }
    }

    /// The digest the contract's `verifierMessageDigest` returns for these fields.
    pub fn digest(&self, s: &Settlement) -> B256 {
        VerifierMessage {
            id: s.id.clone(),
            encryptedSecret: s.encrypted_secret.clone(),
            modelRootHash: s.model_root_hash.clone(),
            nonce: s.nonce,
            taskFee: s.task_fee,
            user: s.user,
        }
        .eip712_signing_hash(&self.eip712())
    }

    /// Fills `s.signature` with the TEE key's signature (r‖s‖v, v = 27/28, RFC 6979).
    pub fn sign(&self, tee: &SigningKey, s: &mut Settlement) -> Result<()> {
        let digest = self.digest(s);
        let (sig, rec) = tee
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|e| Error::Config {
                field: "tee key".into(),
                reason: format!("cannot sign the settlement: {e}"),
            })?;
        let mut out = Vec::with_capacity(65);
        out.extend_from_slice(&sig.to_bytes());
        out.push(27 + rec.to_byte());
        s.signature = Bytes::from(out);
        Ok(())
    }
}

/// FineTuningServing, as seen by one provider (the broker's wallet).
///
/// Every method is idempotency-friendly: the pipeline reads before it writes, and treats the reverts that
/// mean "already done" (`DeliverableAlreadyExists`, `DeliverableAlreadySettled`) as success after checking
/// the chain.
pub trait FineTuningChain: Send + Sync + 'static {
    /// The provider address (the broker's wallet).
    fn provider(&self) -> Address;
    /// Where settlement signatures are valid.
    fn domain(&self) -> SettlementDomain;
    /// The customer's sub-account, `None` when there is none.
    fn account(&self, user: Address)
    -> impl Future<Output = Result<Option<SubAccount>, ChainFailure>> + Send;
    /// A deliverable, `None` when there is none with this id.
    fn deliverable(
        &self,
        user: Address,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeliverableState>, ChainFailure>> + Send;
    /// Sends `addDeliverable(user, id, root)` and waits for it to be mined; returns the transaction hash.
    fn add_deliverable(
        &self,
        user: Address,
        id: &str,
        root: &Bytes,
    ) -> impl Future<Output = Result<B256, ChainFailure>> + Send;
    /// Sends `settleFees(s)` and waits for it to be mined; returns the transaction hash.
    fn settle(&self, s: &Settlement) -> impl Future<Output = Result<B256, ChainFailure>> + Send;
    /// The contract's penalty percentage for unacknowledged deliverables.
    fn penalty_percentage(&self) -> impl Future<Output = Result<u64, ChainFailure>> + Send;
}

impl<T: FineTuningChain> FineTuningChain for std::sync::Arc<T> {
    fn provider(&self) -> Address {
        (**self).provider()
    }
    fn domain(&self) -> SettlementDomain {
        (**self).domain()
    }
    fn account(
        &self,
        user: Address,
    ) -> impl Future<Output = Result<Option<SubAccount>, ChainFailure>> + Send {
        (**self).account(user)
    }
    fn deliverable(
        &self,
        user: Address,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeliverableState>, ChainFailure>> + Send {
        (**self).deliverable(user, id)
    }
    fn add_deliverable(
        &self,
        user: Address,
        id: &str,
        root: &Bytes,
    ) -> impl Future<Output = Result<B256, ChainFailure>> + Send {
        (**self).add_deliverable(user, id, root)
    }
    fn settle(&self, s: &Settlement) -> impl Future<Output = Result<B256, ChainFailure>> + Send {
        (**self).settle(s)
    }
    fn penalty_percentage(&self) -> impl Future<Output = Result<u64, ChainFailure>> + Send {
        (**self).penalty_percentage()
    }
}

pub(crate) fn chain_err(op: &'static str) -> impl FnOnce(ChainFailure) -> Error {
    move |failure| Error::Chain { op, failure }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, keccak256};

    /// The type string must be the contract's byte for byte, or every settlement reverts.
    #[test]
    fn the_type_hash_is_the_contracts() {
        assert_eq!(
            VerifierMessage::eip712_type_hash(&VerifierMessage {
                id: String::new(),
                encryptedSecret: Bytes::new(),
                modelRootHash: Bytes::new(),
                nonce: U256::ZERO,
                taskFee: U256::ZERO,
                user: Address::ZERO,
            }),
            keccak256(
                "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)"
            )
        );
        let d = SettlementDomain {
            chain_id: 31337,
            contract: address!("0xA51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0"),
        };
        let key = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let mut s = Settlement {
            id: "x".into(),
            encrypted_secret: Bytes::new(),
            model_root_hash: Bytes::from(vec![1u8; 32]),
            nonce: U256::from(1),
            task_fee: U256::from(100),
            user: Address::ZERO,
            signature: Bytes::new(),
        };
        d.sign(&key, &mut s).unwrap();
        assert_eq!(s.signature.len(), 65);
        assert!(matches!(s.signature[64], 27 | 28));
    }
}
