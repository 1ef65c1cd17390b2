//! `sample-backend`: the shop on its own (see the library docs and docs/demo.md).

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sample_backend::main(Cli::parse().opts).await
}
