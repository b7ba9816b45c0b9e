//! Flags shared by every command. Precedence: built-in default < environment variable < flag.

use clap::Args;

/// Global flags, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalOpts {
    /// Print the result as one JSON document on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More logs on stderr (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}
