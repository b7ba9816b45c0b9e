//! Ledger verbs — placeholder (being written now).
use super::GlobalOpts;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct GetAccountArgs {}
impl GetAccountArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddAccountArgs {}
impl AddAccountArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DepositArgs {}
impl DepositArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct RefundArgs {}
impl RefundArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct TransferFundArgs {}
impl TransferFundArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetrieveFundArgs {}
impl RetrieveFundArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetSubAccountArgs {}
impl GetSubAccountArgs {
    pub(crate) async fn run(self, _g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet built")
    }
}
