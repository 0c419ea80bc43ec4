//! `lucent user add|passwd|disable|enable|list`: staff accounts from the command line.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::security::password;
use crate::security::rbac::Role;
use crate::store::Db;

#[derive(Subcommand)]
pub enum UserAction {
    /// Add a user. They must change the password at first login.
    Add {
        /// User name: letters, digits, '.', '_', '-'.
        name: String,
        /// One of admin, radiologist, technologist, referrer, auditor.
        #[arg(long)]
        role: String,
        /// Read the initial password from standard input (first line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: super::DataDir,
    },
    /// Set a user's password (also unlocks a locked account and ends their sessions).
    Passwd {
        name: String,
        /// Read the new password from standard input (first line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Do not ask the user to change it at next login.
        #[arg(long)]
        no_change_required: bool,
        #[command(flatten)]
        dir: super::DataDir,
    },
    /// Disable a user: they cannot log in, and their sessions end.
    Disable {
        name: String,
        #[command(flatten)]
        dir: super::DataDir,
    },
    /// Enable a disabled user.
    Enable {
        name: String,
        #[command(flatten)]
        dir: super::DataDir,
    },
    /// List users with role and state.
    List {
        #[command(flatten)]
        dir: super::DataDir,
    },
}

fn read_password(from_stdin: bool, user: &str) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal: pass --password-stdin to read the password from it");
        }
        let a = rpassword::prompt_password(format!("Password for {user}: "))?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the two passwords differ");
        }
        a
    };
    password::check_policy(&pw, user).map_err(|m| anyhow::anyhow!("{m}"))?;
    Ok(pw)
}

fn open(dir: &Path) -> anyhow::Result<Db> {
    if !dir.join(crate::store::DB_FILE).exists() {
        bail!("no database in {0}; run `lucent init --data-dir {0}` first", dir.display());
    }
    Ok(Db::open(dir)?)
}

fn existing(db: &Db, name: &str) -> anyhow::Result<crate::store::db::User> {
    db.user(name)?.with_context(|| format!("no user named {name}"))
}

pub fn run(action: UserAction) -> anyhow::Result<ExitCode> {
    match action {
        UserAction::Add { name, role, password_stdin, dir } => {
            crate::web::admin::check_user_name(&name).map_err(|m| anyhow::anyhow!(m))?;
            let role: Role = role.parse().map_err(|m: String| anyhow::anyhow!(m))?;
            let db = open(&dir.data_dir)?;
            if db.user(&name)?.is_some() {
                bail!("a user named {name} exists already (use `lucent user passwd {name}`)");
            }
            let pw = read_password(password_stdin, &name)?;
            let hash = password::hash(&pw)?;
            if db.add_user(&name, role.as_str(), &hash, true)?.is_none() {
                bail!("a user named {name} exists already");
            }
            println!("added {name} ({role}); they must choose a new password at first login");
        }
        UserAction::Passwd { name, password_stdin, no_change_required, dir } => {
            let db = open(&dir.data_dir)?;
            let user = existing(&db, &name)?;
            let pw = read_password(password_stdin, &name)?;
            let hash = password::hash(&pw)?;
            db.set_password(user.id, &hash, !no_change_required, None)?;
            println!("password of {name} set; their sessions have ended");
        }
        UserAction::Disable { name, dir } => {
            let db = open(&dir.data_dir)?;
            let user = existing(&db, &name)?;
            db.set_disabled(user.id, true)?;
            println!("{name} disabled");
        }
        UserAction::Enable { name, dir } => {
            let db = open(&dir.data_dir)?;
            let user = existing(&db, &name)?;
            db.set_disabled(user.id, false)?;
            println!("{name} enabled");
        }
        UserAction::List { dir } => {
            let db = open(&dir.data_dir)?;
            let now = crate::web::auth::now_secs();
            println!("{:<24} {:<13} {:<22} created", "name", "role", "state");
            for u in db.users()? {
                println!("{:<24} {:<13} {:<22} {}", u.name, u.role, u.state(now), u.created_at);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
