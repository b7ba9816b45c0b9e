//! `zg storage …`, `zg upload`, `zg download` — placeholder until zg-storage lands (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Print a file's root.
    Root,
}
impl StorageCommand {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
#[derive(Debug, clap::Args)]
pub(crate) struct UploadArgs {}
impl UploadArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadArgs {}
impl DownloadArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
