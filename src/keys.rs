//! `sightline keys`: API keys in a data directory's `keys.json` — create (the key is printed
//! once; only its hash is kept), list, revoke. A running server sees the change within a
//! second.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use sightline_common::auth::{self, Role};
use sightline_common::clock::{nanos, now};

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// The server's data directory.
    #[arg(
        long,
        default_value = "./data",
        env = "SIGHTLINE_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Make a key and print it (once: only its hash is stored).
    Create {
        /// The tenant the key belongs to: its data, SQL, SLOs, silences and audit are apart from
        /// every other tenant's.
        #[arg(long, default_value = auth::DEFAULT_TENANT)]
        tenant: String,
        /// ingest, read or admin; repeatable.
        #[arg(long = "role", value_parser = Role::parse, required = true)]
        roles: Vec<Role>,
        /// A note saying what the key is for.
        #[arg(long, default_value = "")]
        name: String,
        /// Stops working after this long (e.g. 90d); never by default.
        #[arg(long, value_parser = crate::config::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// Every key's id, tenant, roles and state (never the key).
    List,
    /// Stops a key at once (the server sees it within a second).
    Revoke {
        /// The key's id (as `list` shows it).
        id: String,
    },
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let path = auth::keys_path(&args.data_dir);
    let mut keys = auth::read_keys(&path).map_err(anyhow::Error::msg)?;
    match args.command {
        KeysCommand::Create {
            tenant,
            roles,
            name,
            expires_in,
        } => {
            let expires = expires_in.map(|d| now() + nanos(d));
            let (key, record) =
                auth::new_key(&tenant, &roles, &name, expires).map_err(anyhow::Error::msg)?;
            let id = record.id.clone();
            keys.push(record);
            auth::write_keys(&path, &keys).map_err(anyhow::Error::msg)?;
            eprintln!(
                "key {id} created in {} — it is shown once, keep it now:",
                path.display()
            );
            println!("{key}");
        }
        KeysCommand::List => {
            let t = now();
            for r in &keys {
                println!("{}", auth::describe(r, t));
            }
        }
        KeysCommand::Revoke { id } => {
            let Some(r) = keys.iter_mut().find(|r| r.id == id) else {
                bail!("no key {id:?} in {}", path.display());
            };
            if r.revoked.is_none() {
                r.revoked = Some(now());
            }
            auth::write_keys(&path, &keys)
                .map_err(anyhow::Error::msg)
                .context("revoking")?;
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}
