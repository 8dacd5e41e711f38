//! `kanade mfa setup|disable|reset`: a password account's second factor (TOTP).

use std::process::ExitCode;

use anyhow::anyhow;
use kanade_shared::api::accounts::{ConfirmPassword, MfaCode, MfaDisabled, MfaEnabled, MfaReset, MfaSetup};

use super::done;
use super::login::{prompt, secret};
use crate::api::Api;
use crate::cli::{Format, Global, MfaCommand};

pub async fn run(cmd: MfaCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let api = Api::new(global)?;
    match cmd {
        MfaCommand::Setup { code } => {
            let password = secret("password: ")?;
            let setup: MfaSetup = api.post_json("/api/auth/mfa/setup", &ConfirmPassword { password }).await?;
            if global.output.is_table() {
                let rows: Vec<&str> = setup.qr.iter().map(String::as_str).collect();
                eprintln!("Scan this with an authenticator app (or type the secret in):\n");
                eprint!("{}", terminal_qr(&rows));
                eprintln!("\n  secret   {}\n  uri      {}\n", setup.secret, setup.otpauth_uri);
            } else {
                crate::output::emit(global.output, &setup);
            }
            let code = match code {
                Some(c) => c,
                None => prompt("code the app shows now: ")?,
            };
            let enabled: MfaEnabled = api.post_json("/api/auth/mfa/enable", &MfaCode { code }).await?;
            match global.output {
                Format::Table | Format::Wide => {
                    println!(
                        "second factor on. Recovery codes (each signs you in once without the phone; shown only now):"
                    );
                    for c in &enabled.recovery_codes {
                        println!("  {c}");
                    }
                }
                _ => crate::output::emit(global.output, &enabled),
            }
        }
        MfaCommand::Disable { password_stdin } => {
            let password = if password_stdin { prompt("")? } else { secret("password: ")? };
            let v: MfaDisabled =
                api.post_json("/api/auth/mfa/disable", &ConfirmPassword { password }).await?;
            let sentence = if v.disabled {
                "second factor off: sign-in needs the password only"
            } else {
                "this account had no second factor"
            };
            done(global.output, &v, sentence);
        }
        MfaCommand::Reset { user } => {
            if user.is_empty() {
                return Err(anyhow!("name the user whose second factor to reset"));
            }
            let v: MfaReset = api.delete(&format!("/api/users/{user}/mfa")).await?;
            let sentence = if v.reset {
                format!("{user}'s second factor removed: they sign in with the password and set up a new one")
            } else {
                format!("{user} had no second factor")
            };
            done(global.output, &v, &sentence);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A QR code for a terminal: two module rows per text line with half blocks, light modules
/// drawn (a dark terminal's background is the code's dark), inside a quiet zone.
fn terminal_qr(rows: &[&str]) -> String {
    const QUIET: usize = 2;
    let size = rows.len();
    let dark = |r: usize, c: usize| -> bool {
        r >= QUIET
            && c >= QUIET
            && r - QUIET < size
            && c - QUIET < size
            && rows[r - QUIET].as_bytes()[c - QUIET] == b'1'
    };
    let total = size + 2 * QUIET;
    let mut out = String::new();
    for r in (0..total).step_by(2) {
        for c in 0..total {
            // Below the last row counts as dark: nothing is drawn there.
            let below_dark = r + 1 >= total || dark(r + 1, c);
            out.push(match (dark(r, c), below_dark) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::terminal_qr;

    #[test]
    fn half_blocks_pair_rows_with_light_drawn() {
        // 1×1 dark module in a 2-module quiet zone: 5×5, three text lines.
        let qr = terminal_qr(&["1"]);
        let lines: Vec<&str> = qr.lines().collect();
        assert_eq!(lines, ["█████", "██▄██", "▀▀▀▀▀"]);
    }
}
