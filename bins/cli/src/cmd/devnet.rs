//! `zg devnet …` — placeholder (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DevnetCommand {
    /// Start.
    Up,
}
impl DevnetCommand {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
