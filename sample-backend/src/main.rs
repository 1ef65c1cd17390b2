//! `sample-backend`: the shop on its own (see the library docs and the README's demo section).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sample-backend",
    version,
    about = "A shop instrumented with OpenTelemetry"
)]
struct Cli {
    #[command(flatten)]
    opts: sample_backend::Options,
}

#[allow(
    clippy::disallowed_methods,
    reason = "main owns the process: it blocks on the runtime it made"
)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sample_backend::main(Cli::parse().opts).await
}
