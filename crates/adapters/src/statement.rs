//! The signed statements of a deployment. Every digest starts with its own tag and the chain id, so no
//! signature made for one statement, one chain or one of 0G's messages verifies as another.
//!
//! | statement | signed by | says |
//! |---|---|---|
//! | [`DeployAuthorization`] | the customer (wallet key) | "deploy my task T of broker B to provider P, until E" |
//! | [`challenge_digest`] | the provider's TEE signer | "I am alive in the attested TEE for this exchange" (its public key, for sealing) |
//! | [`DeployStatement`] | the broker's TEE signer | "these sealed bytes are the adapter of that authorization, for this challenge" |
//! | [`OwnerRequest`] | the customer | "list my adapters" / "remove my adapter N", at time t |

use alloy_primitives::{Address, B256, keccak256};
use k256::ecdsa::SigningKey;

use crate::error::{Error, Result};
use crate::sig::{Sig65, address_of, sign, verify};

/// The longest a deploy authorization may be valid for (seconds from the time it is checked).
pub const MAX_AUTHORIZATION_SECS: u64 = 3600;

/// How far an [`OwnerRequest`]'s timestamp may be from the verifier's clock (seconds, either way).
pub const OWNER_REQUEST_WINDOW_SECS: u64 = 300;

struct Digest(Vec<u8>);

impl Digest {
    fn new(tag: &str, chain_id: u64) -> Self {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(&keccak256(tag.as_bytes()).0);
        v.extend_from_slice(&chain_id.to_be_bytes());
        Self(v)
    }
    fn addr(mut self, a: Address) -> Self {
        self.0.extend_from_slice(a.as_slice());
        self
    }
    fn b32(mut self, b: &[u8; 32]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn text(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&keccak256(s.as_bytes()).0);
        self
    }
    fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn finish(self) -> B256 {
        keccak256(&self.0)
    }
}

fn same<T: PartialEq + std::fmt::Display>(what: &'static str, expected: T, found: T) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::Mismatch {
            what,
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

/// The customer's permission to deploy the adapter of one fine-tuning task to one inference provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployAuthorization {
    /// Chain id of both contracts.
    pub chain_id: u64,
    /// The customer (owner of the task, and the only one the provider serves the adapter to).
    pub user: Address,
    /// The fine-tuning provider (its service address in FineTuningServing) that trained the adapter.
    pub broker: Address,
    /// The inference provider (its service address in InferenceServing) to deploy to.
    pub provider: Address,
    /// The fine-tuning task id.
    pub task_id: String,
    /// Unix seconds after which the permission is void.
    pub expires_at: u64,
}

impl DeployAuthorization {
    /// The digest the customer signs.
    pub fn digest(&self) -> B256 {
        Digest::new("zg-adapters deploy-authorization v1", self.chain_id)
            .addr(self.user)
            .addr(self.broker)
            .addr(self.provider)
            .text(&self.task_id)
            .u64(self.expires_at)
            .finish()
    }

    /// Signs as the customer (`key` must be the key of `user`).
    pub fn sign(self, key: &SigningKey) -> Result<SignedDeployAuthorization> {
        same("authorization user", self.user, address_of(key.verifying_key()))?;
        let signature = sign(key, &self.digest())?;
        Ok(SignedDeployAuthorization {
            authorization: self,
            signature,
        })
    }
}

/// A [`DeployAuthorization`] with the customer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeployAuthorization {
    /// What was authorized.
    pub authorization: DeployAuthorization,
    /// EIP-191 signature by `authorization.user` over [`DeployAuthorization::digest`].
    pub signature: Sig65,
}

impl SignedDeployAuthorization {
    /// Checks the signature (by `user`, low-s), that it is not expired at `now` (Unix seconds) and not valid
    /// for longer than [`MAX_AUTHORIZATION_SECS`], and that it is for `chain_id` and `provider`.
    pub fn verify(&self, chain_id: u64, provider: Address, now: u64) -> Result<()> {
        let a = &self.authorization;
        same("authorization chain id", chain_id, a.chain_id)?;
        same("authorization provider", provider, a.provider)?;
        if a.task_id.is_empty() || a.task_id.len() > 128 {
            return Err(Error::Mismatch {
                what: "authorization task id",
                expected: "1 to 128 bytes".into(),
                found: format!("{} bytes", a.task_id.len()),
            });
        }
        if now > a.expires_at {
            return Err(Error::Stale {
                what: "deploy authorization",
                reason: format!("expired at {} (now {now}); sign a new one", a.expires_at),
            });
        }
        if a.expires_at > now.saturating_add(MAX_AUTHORIZATION_SECS) {
            return Err(Error::Stale {
                what: "deploy authorization",
                reason: format!(
                    "valid until {}, more than {MAX_AUTHORIZATION_SECS} s ahead (now {now})",
                    a.expires_at
                ),
            });
        }
        verify("deploy authorization", &a.digest(), &self.signature, a.user)?;
        Ok(())
    }

    /// A hash of the authorization and its signature (what the broker's [`DeployStatement`] covers).
    pub fn hash(&self) -> B256 {
        let mut v = self.authorization.digest().0.to_vec();
        v.extend_from_slice(&self.signature);
        keccak256(&v)
    }
}

/// What the provider's TEE signer signs in answer to a broker's challenge: both nonces, both parties, the
/// chain. The broker recovers the provider's public key from it (the key it seals the adapter to) and checks
/// that it is the attested, on-chain signer.
pub fn challenge_digest(
    chain_id: u64,
    provider: Address,
    broker: Address,
    broker_nonce: &[u8; 32],
    provider_nonce: &[u8; 32],
) -> B256 {
    Digest::new("zg-adapters challenge v1", chain_id)
        .addr(provider)
        .addr(broker)
        .b32(broker_nonce)
        .b32(provider_nonce)
        .finish()
}

/// What the broker's TEE signer signs when it hands an adapter over: the provider's challenge, the
/// customer's authorization, the adapter's name and base, and the exact sealed bytes and wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployStatement {
    /// Chain id.
    pub chain_id: u64,
    /// The inference provider deployed to.
    pub provider: Address,
    /// The fine-tuning provider handing the adapter over.
    pub broker: Address,
    /// The nonce the provider issued for this deployment (single use).
    pub provider_nonce: [u8; 32],
    /// [`SignedDeployAuthorization::hash`].
    pub authorization_hash: B256,
    /// The adapter's model name (`ft-…`).
    pub adapter_name: String,
    /// The base model it adapts.
    pub base_model: String,
    /// keccak256 of the ECIES-wrapped sealing key.
    pub wrapped_key_hash: B256,
    /// keccak256 of the sealed package.
    pub sealed_hash: B256,
    /// Length of the sealed package.
    pub sealed_len: u64,
}

impl DeployStatement {
    /// The digest the broker's TEE signer signs.
    pub fn digest(&self) -> B256 {
        Digest::new("zg-adapters deploy v1", self.chain_id)
            .addr(self.provider)
            .addr(self.broker)
            .b32(&self.provider_nonce)
            .b32(&self.authorization_hash.0)
            .text(&self.adapter_name)
            .text(&self.base_model)
            .b32(&self.wrapped_key_hash.0)
            .b32(&self.sealed_hash.0)
            .u64(self.sealed_len)
            .finish()
    }
}

/// What a customer asks a provider about its own adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerAction {
    /// List the caller's adapters.
    List,
    /// Remove the caller's adapter of this name.
    Remove(String),
}

impl OwnerAction {
    fn text(&self) -> String {
        match self {
            OwnerAction::List => "list".into(),
            OwnerAction::Remove(name) => format!("remove:{name}"),
        }
    }
}

/// A customer's signed request about its adapters on one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRequest {
    /// Chain id.
    pub chain_id: u64,
    /// The inference provider asked.
    pub provider: Address,
    /// The customer.
    pub user: Address,
    /// What it asks.
    pub action: OwnerAction,
    /// Unix seconds when signed (must be within [`OWNER_REQUEST_WINDOW_SECS`] of the provider's clock).
    pub timestamp: u64,
}

impl OwnerRequest {
    /// The digest the customer signs.
    pub fn digest(&self) -> B256 {
        Digest::new("zg-adapters owner v1", self.chain_id)
            .addr(self.provider)
            .addr(self.user)
            .text(&self.action.text())
            .u64(self.timestamp)
            .finish()
    }

    /// Signs as the customer.
    pub fn sign(&self, key: &SigningKey) -> Result<Sig65> {
        same("owner request user", self.user, address_of(key.verifying_key()))?;
        sign(key, &self.digest())
    }

    /// Checks `signature` (by `user`), the chain and provider, and the timestamp window at `now`.
    pub fn verify(&self, signature: &Sig65, chain_id: u64, provider: Address, now: u64) -> Result<()> {
        same("owner request chain id", chain_id, self.chain_id)?;
        same("owner request provider", provider, self.provider)?;
        if now.abs_diff(self.timestamp) > OWNER_REQUEST_WINDOW_SECS {
            return Err(Error::Stale {
                what: "owner request",
                reason: format!(
                    "signed at {}, the provider's clock says {now} (window {OWNER_REQUEST_WINDOW_SECS} s)",
                    self.timestamp
                ),
            });
        }
        verify("owner request", &self.digest(), signature, self.user)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_slice(&[b; 32]).unwrap()
    }

    fn auth(user: &SigningKey, now: u64) -> DeployAuthorization {
        DeployAuthorization {
            chain_id: 31337,
            user: address_of(user.verifying_key()),
            broker: Address::repeat_byte(0xb),
            provider: Address::repeat_byte(0xc),
            task_id: "0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d".into(),
            expires_at: now + 600,
        }
    }

    #[test]
    fn an_authorization_holds_only_for_its_chain_provider_and_lifetime() {
        let user = key(1);
        let now = 1_800_000_000;
        let signed = auth(&user, now).sign(&user).unwrap();
        signed.verify(31337, Address::repeat_byte(0xc), now).unwrap();
        // Another provider, another chain, after expiry, too long-lived: each refused by name.
        let e = signed.verify(31337, Address::repeat_byte(0xd), now).unwrap_err();
        assert!(e.to_string().contains("authorization provider"), "{e}");
        assert!(signed.verify(1, Address::repeat_byte(0xc), now).is_err());
        let e = signed
            .verify(31337, Address::repeat_byte(0xc), now + 601)
            .unwrap_err();
        assert!(matches!(e, Error::Stale { .. }), "{e}");
        let mut long = auth(&user, now);
        long.expires_at = now + MAX_AUTHORIZATION_SECS + 1;
        let long = long.sign(&user).unwrap();
        assert!(long.verify(31337, Address::repeat_byte(0xc), now).is_err());
        // A changed task id invalidates the signature; someone else cannot sign for the user.
        let mut forged = signed.clone();
        forged.authorization.task_id = "another".into();
        let e = forged.verify(31337, Address::repeat_byte(0xc), now).unwrap_err();
        assert!(matches!(e, Error::WrongSigner { .. }), "{e}");
        assert!(auth(&user, now).sign(&key(2)).is_err());
    }

    #[test]
    fn digests_are_domain_separated() {
        let user = key(1);
        let a = auth(&user, 0);
        let owner = OwnerRequest {
            chain_id: 31337,
            provider: a.provider,
            user: a.user,
            action: OwnerAction::List,
            timestamp: 0,
        };
        let mut digests = vec![
            a.digest(),
            owner.digest(),
            challenge_digest(31337, a.provider, a.broker, &[0; 32], &[0; 32]),
        ];
        let mut remove = owner.clone();
        remove.action = OwnerAction::Remove("ft-x".into());
        digests.push(remove.digest());
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 4);
    }

    #[test]
    fn owner_requests_expire_and_name_their_action() {
        let user = key(3);
        let now = 1_800_000_000;
        let req = OwnerRequest {
            chain_id: 31337,
            provider: Address::repeat_byte(0xc),
            user: address_of(user.verifying_key()),
            action: OwnerAction::Remove("ft-m-abc".into()),
            timestamp: now,
        };
        let sig = req.sign(&user).unwrap();
        req.verify(&sig, 31337, req.provider, now + 10).unwrap();
        assert!(req.verify(&sig, 31337, req.provider, now + 301).is_err());
        let mut other = req.clone();
        other.action = OwnerAction::Remove("ft-m-other".into());
        assert!(other.verify(&sig, 31337, req.provider, now).is_err());
    }
}
