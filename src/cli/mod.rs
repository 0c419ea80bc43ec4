//! The command line: clap definitions, and the glue that turns arguments into calls on the
//! other modules.
//!
//! Owns: argument parsing, exit codes, human and JSON output.
//! Must not: hold business logic; anything worth testing without a terminal lives elsewhere.

mod deid;
mod dicom;
mod ml;
mod transfer;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::server::{self, Overrides};
use crate::store::{Reader, Store};

#[derive(Parser)]
#[command(
    name = "lucent",
    version,
    about = "Lucent: on-premise AI imaging appliance (DICOM node, AI pipeline, clinical web UI)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Data directory: database, files, configuration.
    #[arg(long, value_name = "DIR", env = "LUCENT_DATA_DIR", default_value = "./lucent-data")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: DICOM listener and HTTP server. Stops gracefully on SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// DICOM port (overrides dicom.port).
        #[arg(long, value_name = "N")]
        dicom_port: Option<u16>,
        /// HTTP port (overrides http.port).
        #[arg(long, value_name = "N")]
        http_port: Option<u16>,
    },
    /// Create the data directory, configuration and database. Safe to run again.
    Init {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Show or change the configuration (<data-dir>/config.toml).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Count patients, studies, series and instances, and stored bytes. Safe while serving.
    Stats {
        #[command(flatten)]
        dir: DataDir,
        /// Print JSON with keys patients, studies, series, instances, bytes.
        #[arg(long)]
        json: bool,
    },
    /// Import DICOM Part 10 files and folders (recursively) through the storage path.
    ///
    /// Reports imported, duplicate and rejected files, each rejection with its reason.
    /// Exit status: 0 when nothing was rejected, 2 when some files were rejected.
    Import {
        #[command(flatten)]
        dir: DataDir,
        /// Files or folders to import.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Write stored instances as Part 10 files named <SOPInstanceUID>.dcm, as received.
    Export {
        #[command(flatten)]
        dir: DataDir,
        /// Output folder (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only this study (Study Instance UID).
        #[arg(long, value_name = "UID")]
        study: Option<String>,
    },
    /// File-level DICOM tools: decode pixels to .npy, render a frame, dump attributes, de-identify.
    Dicom {
        #[command(subcommand)]
        command: dicom::DicomCommand,
    },
    /// Staff accounts: add, set passwords, disable, list.
    User {
        #[command(subcommand)]
        action: user::UserAction,
    },
    #[command(flatten)]
    Ml(ml::MlCommand),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration.
    Show {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print one value, e.g. `lucent config get dicom.ae_title`.
    Get {
        /// Dotted key, e.g. dicom.port.
        key: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Set one value, checked against its type, e.g. `lucent config set dicom.port 104`.
    Set {
        /// Dotted key, e.g. dicom.port.
        key: String,
        /// New value. Lists take comma-separated items or a TOML array.
        value: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUCENT_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { dir, dicom_port, http_port } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(server::serve(&dir.data_dir, Overrides { dicom_port, http_port }))?;
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        Command::Init { dir } => {
            let d = &dir.data_dir;
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            let wrote = config::write_default_if_missing(d)?;
            let cfg = Config::load(d)?;
            drop(Store::open(d, server::policy(&cfg))?);
            let db = crate::store::Db::open(d)?;
            if let Some(otp) = crate::web::auth::bootstrap_admin(&db).map_err(|e| anyhow::anyhow!(e.message))? {
                server::print_first_admin(&otp);
            }
            println!(
                "initialised {} ({})",
                d.display(),
                if wrote { "new configuration written" } else { "existing configuration kept" }
            );
        }
        Command::Config { action } => match action {
            ConfigAction::Show { dir } => print!("{}", Config::load(&dir.data_dir)?.to_toml()),
            ConfigAction::Get { key, dir } => {
                println!("{}", Config::load(&dir.data_dir)?.get(&key)?)
            }
            ConfigAction::Set { key, value, dir } => {
                std::fs::create_dir_all(&dir.data_dir)?;
                let cfg = config::set(&dir.data_dir, &key, &value)?;
                println!("{key} = {}", cfg.get(&key)?);
            }
        },
        Command::Stats { dir, json } => {
            let s = Reader::open(&dir.data_dir)?.stats()?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "patients   {}\nstudies    {}\nseries     {}\ninstances  {}\nbytes      {}",
                    s.patients, s.studies, s.series, s.instances, s.bytes
                );
            }
        }
        Command::Import { dir, paths } => return transfer::import(&dir.data_dir, &paths),
        Command::Export { dir, out, study } => transfer::export(&dir.data_dir, &out, study.as_deref())?,
        Command::Dicom { command } => return dicom::run(command),
        Command::User { action } => return user::run(action),
        Command::Ml(cmd) => return ml::run(cmd),
    }
    Ok(ExitCode::SUCCESS)
}
