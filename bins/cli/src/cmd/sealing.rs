//! `zg decrypt-model` — placeholder until zg-sealing lands (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct DecryptModelArgs {}
impl DecryptModelArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
