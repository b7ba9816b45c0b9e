//! LoRA adapter deployment between a zg-compute fine-tuning broker and an inference provider (0G's
//! "deploy-adapter"), the parts both sides and the customer share: adapter names, the signed statements,
//! the mutual attestation check and the sealed package. The gRPC service itself (`zg.v1.Adapters`) is served
//! by zg-provider and called by zg-broker; see `proto/zg/v1/adapters.proto` for the message flow:
//!
//! 1. The customer signs a [`DeployAuthorization`] (task, broker, provider, expiry) and gives it to the broker.
//! 2. The broker checks it (the task is the customer's, delivered and acknowledged), asks the provider for a
//!    challenge with its own nonce, and [`verify_peer`]s the provider: evidence bound to that nonce, the bound
//!    signer equal to the provider's on-chain `teeSignerAddress`, and the [`challenge_digest`] signature by that
//!    signer (whose public key the adapter is sealed to).
//! 3. The broker seals the [`AdapterPackage`] for that key ([`AdapterPackage::seal_for`]), signs a
//!    [`DeployStatement`] over everything, and sends it with fresh evidence bound to the provider's nonce.
//! 4. The provider [`verify_peer`]s the broker the same way (its signer from FineTuningServing), checks the
//!    statement, the authorization and the on-chain deliverable, opens the package
//!    ([`SealedAdapter::open`]) and serves it as [`adapter_name`] to the authorizing customer only.
//!
//! Who can do what, and the worst case: a party without an attested TEE whose signer the chain names cannot
//! pass step 2 or 4; a replayed challenge answer or deploy statement fails the single-use nonce; a customer
//! can only authorize its own tasks, and only for one provider and at most [`MAX_AUTHORIZATION_SECS`].
//!
//! # Example
//! ```
//! use alloy_primitives::Address;
//! use k256::ecdsa::SigningKey;
//! use zg_adapters::{AdapterPackage, DeployAuthorization, adapter_name, address_of};
//!
//! let customer = SigningKey::from_slice(&[1; 32])?;
//! let broker_tee = SigningKey::from_slice(&[2; 32])?;
//! let provider_tee = k256::SecretKey::from_slice(&[3; 32])?;
//! let now = 1_800_000_000;
//! let auth = DeployAuthorization {
//!     chain_id: 31337,
//!     user: address_of(customer.verifying_key()),
//!     broker: Address::repeat_byte(0xb),
//!     provider: Address::repeat_byte(0xc),
//!     task_id: "0d4c6a52-9f7e-4b1a-8c3d-2e5f6a7b8c9d".into(),
//!     expires_at: now + 600,
//! }
//! .sign(&customer)?;
//! auth.verify(31337, Address::repeat_byte(0xc), now)?;
//!
//! let package = AdapterPackage { config_json: br#"{"r":8}"#.to_vec(), safetensors: vec![0; 64] };
//! let sealed = package.seal_for(&broker_tee, &provider_tee.public_key())?;
//! let opened = sealed.open(&provider_tee, address_of(broker_tee.verifying_key()), 1 << 20)?;
//! assert_eq!(opened, package);
//! assert_eq!(
//!     adapter_name("smollm2-135m-instruct", &auth.authorization.task_id),
//!     "ft-smollm2-135m-instruct-0d4c6a52-9f7"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod name;
mod package;
mod peer;
mod sig;
mod statement;

pub use error::{Error, Result};
pub use name::{ADAPTER_PREFIX, MAX_NAME_LEN, adapter_name, check_name, is_adapter_name};
pub use package::{
    AdapterPackage, CONFIG_FILE, DEFAULT_MAX_PACKAGE_BYTES, SealedAdapter, WEIGHTS_FILE, private_dir,
    private_file,
};
pub use peer::{PeerPolicy, VerifiedPeer, verify_peer};
pub use sig::{Sig65, address_of, personal_hash, recover, sig65, sign, verify};
pub use statement::{
    DeployAuthorization, DeployStatement, MAX_AUTHORIZATION_SECS, OWNER_REQUEST_WINDOW_SECS, OwnerAction,
    OwnerRequest, SignedDeployAuthorization, challenge_digest,
};
