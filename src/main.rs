//! `sightline`: the observability backend in one binary.
//!
//! - `sightline serve`: the OTLP receivers, the store and the HTTP API (see `serve.rs`);
//! - `sightline load`: a load generator that drives a running server over OTLP (see `load.rs`);
//! - `sightline slo validate`: checks SLO spec files (see `slo.rs`);
//! - `sightline keys`: API keys (see `keys.rs`);
//! - `sightline demo`: Sightline, the sample shop, SLOs, a receiver and an outage scenario
//!   (see `demo.rs`).

mod config;
mod demo;
mod keys;

mod serve;
mod slo;
mod tenants;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: buffers of many megabytes are allocated and freed on
/// different threads (request decoding, the WAL thread, flushes), which glibc's per-thread
/// arenas keep as resident memory; measured under load, RSS stayed ~3× higher with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "sightline",
    version,
    about = "OpenTelemetry in, Parquet at rest, SQL out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: OTLP/gRPC, OTLP/HTTP, the store and the HTTP API.
    Serve(serve::ServeArgs),
    /// Send realistic OTLP load to a running server for a bounded time and report
    /// throughput, latency percentiles and the server's peak memory.
    Load(sightline_load::LoadArgs),
    /// Work with SLO spec files.
    #[command(subcommand)]
    Slo(slo::SloCommand),
    /// API keys: create (printed once, stored as a hash), list, revoke.
    Keys(keys::KeysArgs),
    /// See it all in a few minutes: Sightline, an instrumented sample shop under load, SLOs,
    /// and an outage that fires a page alert and resolves.
    Demo(demo::DemoArgs),
    /// The demo's sample shop (the `sample-backend` crate), run by `sightline demo`.
    #[command(hide = true)]
    SampleBackend(sample_backend::Options),
}

#[allow(
    clippy::disallowed_methods,
    reason = "main owns the process: it blocks on the runtime it made"
)]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Keys(args) = cli.command {
        return keys::run(args);
    }
    if let Command::Slo(cmd) = cli.command {
        if !slo::run(cmd)? {
            std::process::exit(1);
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sightline")
        // Request decoding and Parquet encoding run as blocking tasks; a bounded pool keeps
        // the number of threads (and malloc arenas, which dominate RSS under load) small.
        .max_blocking_threads(8)
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Load(args) => Ok(runtime.block_on(sightline_load::run(args))?),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::SampleBackend(opts) => {
            sightline_common::process::stop_with_parent();
            runtime.block_on(sample_backend::main(opts))
        }
        Command::Slo(_) | Command::Keys(_) => Ok(()),
    }
}
