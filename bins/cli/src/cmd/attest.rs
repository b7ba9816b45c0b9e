//! `zg attest …` — placeholder until zg-attestation lands (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify a quote.
    Verify,
}
impl AttestCommand {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
