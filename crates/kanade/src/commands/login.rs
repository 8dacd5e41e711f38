//! `kanade login`: sign in to the backend and keep the session token for later commands. A
//! temporary password (set by an admin) is replaced on the spot.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kanade_shared::api::accounts::{self, Login, PasswordChange, PasswordChanged};
use serde_json::json;

use crate::api::Api;
use crate::cli::{Format, Global};
use crate::credentials::{self, Session};

pub async fn run(
    user: Option<String>,
    password_stdin: bool,
    code: Option<String>,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let user = match user {
        Some(u) => u,
        None => prompt("user: ")?,
    };
    let password = if password_stdin { read_line()? } else { secret("password: ")? };
    let anonymous = Global { token: None, ..global.clone() };
    let api = Api::new(&anonymous)?;
    let interactive = !password_stdin;
    let mut session = sign_in(&api, &user, &password, code, interactive).await?;
    if session.user.must_change_password {
        if password_stdin {
            bail!("{user} must choose a new password first; run `kanade login` interactively");
        }
        eprintln!("{user} has a temporary password; choose a new one (at least 10 characters).");
        let new = secret("new password: ")?;
        if secret("again: ")? != new {
            bail!("the two new passwords differ; nothing changed");
        }
        let as_user = Api::new(&Global { token: Some(session.token.clone()), ..global.clone() })?;
        let change = PasswordChange { current: password, new: new.clone() };
        as_user.post_json::<PasswordChanged>("/api/auth/password", &change).await?;
        // A code is used up by the first sign-in: the second asks for the next one.
        session = sign_in(&api, &user, &new, None, interactive).await?;
    }
    let stored = Session { user: user.clone(), token: session.token.clone(), expires_ms: session.expires_ms };
    let mut all = credentials::load();
    all.sessions.insert(global.backend_url.trim_end_matches('/').to_owned(), stored.clone());
    let path = credentials::save(&all)?;
    match global.output {
        Format::Json | Format::Yaml => crate::output::emit(
            global.output,
            &json!({ "user": user, "role": session.user.role, "expires_ms": stored.expires_ms }),
        ),
        Format::Table | Format::Wide => println!(
            "signed in to {} as {user} ({}); token kept in {}",
            global.backend_url,
            session.user.role,
            path.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/auth/login`, with the second factor's code when the account has one: `code`, or
/// asked for at the terminal (again when the one given was already used).
async fn sign_in(
    api: &Api,
    user: &str,
    password: &str,
    code: Option<String>,
    interactive: bool,
) -> anyhow::Result<accounts::Session> {
    let mut body = Login { name: user.to_owned(), password: password.to_owned(), code };
    let mut asked = false;
    loop {
        match api.post_json("/api/auth/login", &body).await {
            Err(e)
                if matches!(crate::api::error_code(&e), Some("mfa_required" | "mfa_invalid")) && !asked =>
            {
                if !interactive {
                    bail!("{e}; give the authenticator app's current code with --code");
                }
                if crate::api::error_code(&e) == Some("mfa_invalid") {
                    eprintln!("{e}");
                }
                body.code = Some(prompt("code from your authenticator app (or a recovery code): ")?);
                asked = true;
            }
            other => return other,
        }
    }
}

pub(super) fn prompt(label: &str) -> anyhow::Result<String> {
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
pub(super) fn secret(label: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        return prompt(label);
    }
    rpassword::prompt_password(label).context("cannot read the password from the terminal")
}
