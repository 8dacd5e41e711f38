//! `kanade login`: sign in to the backend and keep the session token for later commands. A
//! temporary password (set by an admin) is replaced on the spot.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use crate::api::Api;
use crate::cli::{Format, Global};
use crate::credentials::{self, Session};

pub async fn run(user: Option<String>, password_stdin: bool, global: &Global) -> anyhow::Result<ExitCode> {
    let user = match user {
        Some(u) => u,
        None => prompt("user: ")?,
    };
    let password = if password_stdin { read_line()? } else { secret("password: ")? };
    let anonymous = Global { token: None, ..global.clone() };
    let api = Api::new(&anonymous)?;
    let mut session =
        api.post_json("/api/auth/login", &json!({ "name": user, "password": password })).await?;
    if session["user"]["must_change_password"] == true {
        if password_stdin {
            bail!("{user} must choose a new password first; run `kanade login` interactively");
        }
        eprintln!("{user} has a temporary password; choose a new one (at least 10 characters).");
        let new = secret("new password: ")?;
        if secret("again: ")? != new {
            bail!("the two new passwords differ; nothing changed");
        }
        let token = session["token"].as_str().unwrap_or_default().to_owned();
        let as_user = Api::new(&Global { token: Some(token), ..global.clone() })?;
        as_user.post_json("/api/auth/password", &json!({ "current": password, "new": new })).await?;
        session = api.post_json("/api/auth/login", &json!({ "name": user, "password": new })).await?;
    }
    let stored = Session {
        user: user.clone(),
        token: session["token"].as_str().unwrap_or_default().to_owned(),
        expires_ms: session["expires_ms"].as_i64().unwrap_or_default(),
    };
    let mut all = credentials::load();
    all.sessions.insert(global.backend_url.trim_end_matches('/').to_owned(), stored.clone());
    let path = credentials::save(&all)?;
    match global.output {
        Format::Json | Format::Yaml => crate::output::emit(
            global.output,
            &json!({ "user": user, "role": session["user"]["role"], "expires_ms": stored.expires_ms }),
        ),
        Format::Table => println!(
            "signed in to {} as {user} ({}); token kept in {}",
            global.backend_url,
            session["user"]["role"].as_str().unwrap_or("?"),
            path.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    read_line()
}

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Read a secret without echo when the input is a terminal (rpassword: termios on Unix, the
/// console mode on Windows).
fn secret(label: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        return prompt(label);
    }
    rpassword::prompt_password(label).context("cannot read the password from the terminal")
}
