//! Placeholder: filled in by its owner.

/// Subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Placeholder.
    Todo,
}

/// Runs the subcommand.
pub fn run(_cmd: Command) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
