//! `zg decrypt-model`: verify and decrypt a sealed fine-tuned model (0G's sealed format).
use super::{
    GlobalOpts,
    opts::{RpcOpts, WalletOpts},
};
use crate::output;
use anyhow::Context as _;
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zg_sealing::{Address, EncryptedSecret, SealingKey, Unsealer};

/// Decrypts a model sealed by a provider's TEE. The tag signature is checked against the provider's
/// TEE signer before anything is decrypted; the output appears only when every chunk authenticated.
///
/// Examples:
///   zg decrypt-model --encrypted-model model.sealed --output model.bin --signer 0xTEE… --secret 0x…
///   zg decrypt-model --keystore me.json --encrypted-model model.sealed --output model.bin \
///       --provider 0xPROVIDER… --task-id 3f2c…
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("key_source").required(true).args(["secret", "task_id"])))]
pub(crate) struct DecryptModelArgs {
    /// The sealed model file, as downloaded from storage.
    #[arg(long, value_name = "FILE")]
    encrypted_model: PathBuf,
    /// Where to write the decrypted model.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// The provider's TEE signer address; the sealed file's tag signature must recover to it. Required with
    /// `--secret`; with `--provider` it defaults to the `teeSignerAddress` of the provider's fine-tuning service.
    #[arg(long, env = "ZG_TEE_SIGNER", value_name = "ADDR")]
    signer: Option<String>,
    /// The model's AES-256 key as 64 hex digits, when you already have it in the clear.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["provider", "task_id"])]
    secret: Option<String>,
    /// Provider address: read the task's revealed `encryptedSecret` from the fine-tuning contract and
    /// open it with your key (`--keystore` / `ZG_KEYSTORE`, else `ZG_PRIVATE_KEY`).
    #[arg(long, requires = "task_id", value_name = "ADDR")]
    provider: Option<String>,
    /// Fine-tuning task id (with `--provider`).
    #[arg(long, requires = "provider", value_name = "ID")]
    task_id: Option<String>,
    #[command(flatten)]
    rpc: RpcOpts,
    #[command(flatten)]
    wallet: WalletOpts,
}

impl DecryptModelArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let explicit_signer: Option<Address> = match &self.signer {
            Some(s) => Some(
                s.parse()
                    .with_context(|| format!("--signer {s:?} is not an address"))?,
            ),
            None => None,
        };
        let (key, signer) = match (&self.secret, &self.provider, &self.task_id) {
            (Some(secret), _, _) => {
                let signer = explicit_signer.context(
                    "--secret needs --signer ADDR (or ZG_TEE_SIGNER): the provider's TEE signer address",
                )?;
                (SealingKey::from_hex(secret).context("--secret")?, signer)
            }
            (None, Some(provider), Some(task_id)) => {
                let provider: Address = provider
                    .parse()
                    .with_context(|| format!("--provider {provider:?} is not an address"))?;
                let customer = customer_key(&self.wallet)?;
                let user = zg_sealing::signer_address(&zg_sealing::k256::ecdsa::VerifyingKey::from(
                    customer.public_key(),
                ));
                let chain = self.rpc.connect(None).await?;
                let signer = match explicit_signer {
                    Some(s) => s,
                    None => chain.fine_tuning().tee_signer(provider).await?.with_context(|| {
                        format!("{provider} has no fine-tuning service on chain: pass its TEE signer with --signer")
                    })?,
                };
                let encrypted = fetch_encrypted_secret(&chain, user, provider, task_id).await?;
                (unwrap_secret(&encrypted, &customer)?, signer)
            }
            _ => anyhow::bail!("give --secret, or --provider with --task-id"),
        };
        let spin = ProgressBar::new_spinner();
        spin.set_message("verifying and decrypting");
        spin.enable_steady_tick(Duration::from_millis(120));
        let (input, out) = (self.encrypted_model.clone(), self.output.clone());
        let summary =
            tokio::task::spawn_blocking(move || Unsealer::new(&key, signer).unseal_file(&input, &out))
                .await?;
        spin.finish_and_clear();
        let summary =
            summary.with_context(|| format!("cannot decrypt {}", self.encrypted_model.display()))?;
        if g.json {
            output::json(&serde_json::json!({
                "output": self.output.display().to_string(),
                "bytes": summary.plaintext_len,
                "chunks": summary.chunks,
                "signer": summary.signer.to_string(),
            }))?;
        } else {
            output::text(format_args!(
                "{} ({} bytes, tags signed by {})",
                self.output.display(),
                summary.plaintext_len,
                summary.signer
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The customer's secp256k1 key, from the keystore or `ZG_PRIVATE_KEY`, as every other verb loads it.
fn customer_key(wallet: &WalletOpts) -> anyhow::Result<zg_sealing::k256::SecretKey> {
    let signer = wallet
        .signer()
        .context("decrypt-model --provider needs the key the task was created with")?;
    zg_sealing::k256::SecretKey::from_slice(signer.to_bytes().as_slice())
        .map_err(|_| anyhow::anyhow!("the wallet key is not a secp256k1 private key"))
}

/// Opens the deliverable's `encryptedSecret` (eciesjs ECIES, 129 bytes) with the customer's key.
fn unwrap_secret(encrypted: &[u8], customer: &zg_sealing::k256::SecretKey) -> anyhow::Result<SealingKey> {
    EncryptedSecret::from_bytes(encrypted.to_vec())
        .unwrap_with(customer)
        .context("cannot open the deliverable's encryptedSecret with this wallet's key (was the task created with it?)")
}

/// Fetches the revealed `encryptedSecret` of `user`'s task `task_id` with `provider` from FineTuningServing.
///
/// The contract stores it only when the provider settled a deliverable the customer had acknowledged (the
/// atomic key-for-payment exchange), so an empty secret says which step is missing.
async fn fetch_encrypted_secret(
    chain: &zg_chain::Client,
    user: Address,
    provider: Address,
    task_id: &str,
) -> anyhow::Result<Vec<u8>> {
    let d = chain
        .fine_tuning()
        .get_deliverable(user, provider, task_id)
        .await?;
    if d.encrypted_secret.is_empty() {
        let step = if !d.acknowledged {
            "acknowledge the deliverable first (after checking the model's root), then wait for the provider to settle"
        } else if !d.settled {
            "you acknowledged it; the key is revealed when the provider settles the task"
        } else {
            "the task was settled without an acknowledgement, so the key was never revealed"
        };
        anyhow::bail!("task {task_id} with {provider}: no key revealed yet: {step}");
    }
    Ok(d.encrypted_secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_secret_opens_an_ecies_wrapped_key_and_rejects_other_keys() {
        let customer = zg_sealing::k256::SecretKey::from_slice(&[5u8; 32]).unwrap();
        let other = zg_sealing::k256::SecretKey::from_slice(&[6u8; 32]).unwrap();
        let key = SealingKey::generate().unwrap();
        let wrapped = key.wrap_for(&customer.public_key()).unwrap();
        let opened = unwrap_secret(wrapped.as_bytes(), &customer).unwrap();
        // Same key: what one seals, the other opens.
        let tee = zg_sealing::k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sealed = zg_sealing::Sealer::new(&key)
            .seal_bytes(&tee, b"weights")
            .unwrap();
        let signer = zg_sealing::signer_address(tee.verifying_key());
        assert_eq!(
            Unsealer::new(&opened, signer).unseal_bytes(&sealed).unwrap(),
            b"weights"
        );
        assert!(unwrap_secret(wrapped.as_bytes(), &other).is_err());
    }
}
