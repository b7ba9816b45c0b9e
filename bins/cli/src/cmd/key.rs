//! `zg key …` — placeholder (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// New key.
    New,
}
impl KeyCommand {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
