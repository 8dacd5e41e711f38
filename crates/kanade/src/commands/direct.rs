//! The break-glass paths that talk to NATS directly, so they work with the backend down:
//! `kanade run` (a command into EXEC, its result awaited on the results subject) and
//! `kanade kill`.

use super::{exit_status, now_ms};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use kanade_shared::wire::{self, Command, ExecResult, ExecStatus, Shell, Timestamp};
use kanade_shared::{ExecId, HumanDuration, JobId, PcId, signing, subjects};

use crate::cli::Global;

/// The operator's signing key, when one is configured.
fn signer(global: &Global) -> anyhow::Result<Option<ed25519_dalek::SigningKey>> {
    let Some(path) = &global.signing_key else { return Ok(None) };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the signing key {} (--signing-key / KANADE_SIGNING_KEY)", path.display())
    })?;
    signing::decode_secret(&text).map(Some).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn keygen(file: &Path, global: &Global) -> anyhow::Result<ExitCode> {
    let key = signing::generate().map_err(anyhow::Error::msg)?;
    let secret = signing::encode_secret(&key);
    kanade_shared::files::write_private(file, secret.as_bytes(), kanade_shared::files::Existing::Keep)
        .with_context(|| {
            format!("cannot create {} (an existing key is never overwritten)", file.display())
        })?;
    let public = signing::encode_public(&key.verifying_key());
    match global.output {
        format @ (crate::cli::Format::Json | crate::cli::Format::Yaml) => {
            crate::output::emit(format, &serde_json::json!({ "file": file, "public_key": public }))
        }
        crate::cli::Format::Table | crate::cli::Format::Wide => println!(
            "wrote {}; keep it private. Agents that should accept your run/kill add:\n[security]\ntrusted_keys = [\"<backend key>\", \"{public}\"]",
            file.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(global: &Global) -> anyhow::Result<async_nats::Client> {
    Ok(kanade_shared::nats::connect_once(&global.nats_url, &global.broker(), "kanade-cli").await?)
}

/// Whether `pc` can be waited for: connected now (it answers a ping), or away but known (agents
/// publish their inventory at start, kept 90 days). A PC that is neither has never connected —
/// a typo — and waiting for it to start the script would be waiting for nobody. Anything else
/// that stops the check leaves the decision to the start timeout.
async fn known(client: &async_nats::Client, pc: &PcId, start_within: Duration) -> anyhow::Result<()> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let ping = client.request(subjects::ping(pc), "".into());
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), ping).await {
        return Ok(());
    }
    let js = async_nats::jetstream::new(client.clone());
    let Ok(stream) = js.get_stream("INVENTORY").await else { return Ok(()) };
    match stream.get_last_raw_message_by_subject(&subjects::inventory(pc)).await {
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => bail!(
            "{pc} is not connected and has never connected to this fleet (no inventory from it); check the name with `kanade agents list` (names are case-sensitive)"
        ),
        _ => {
            eprintln!(
                "{pc} is not connected now; waiting up to {}s for it to start the script",
                start_within.as_secs()
            );
            Ok(())
        }
    }
}

/// `limits`: (script timeout, how long the PC has to start it before `run` gives up and the
/// agent would skip it).
pub async fn run(
    pc: &str,
    shell: Option<String>,
    limits: (&str, &str),
    script: &[String],
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let (timeout, start_within) = limits;
    let start_within: HumanDuration = start_within.parse().map_err(|e| anyhow!("--start-within: {e}"))?;
    let start_within = start_within.get();
    let pc: PcId = pc.parse().map_err(|e| anyhow!("{e}"))?;
    let shell_name = shell.unwrap_or_else(|| if cfg!(windows) { "powershell".into() } else { "sh".into() });
    let shell = Shell::parse(&shell_name)
        .ok_or_else(|| anyhow!("--shell {shell_name:?} is not one of {}", Shell::KNOWN.join(", ")))?;
    let timeout: HumanDuration = timeout.parse().map_err(|e| anyhow!("--timeout: {e}"))?;
    let mut cmd = Command::inline(
        JobId::adhoc(kanade_shared::RequestId::new()),
        "1".parse().expect("valid"),
        shell,
        script_line(shell, script),
    );
    cmd.timeout_secs = timeout.as_secs().max(1);
    // A PC that comes back later must not run a command its operator gave up on.
    cmd.deadline_at = Some(Timestamp::now_utc() + start_within);
    crate::commands::fleet::refuse_when_frozen(global).await?;
    let key = signer(global)?;
    let client = connect(global).await?;
    let js = async_nats::jetstream::new(client.clone());
    known(&client, &pc, start_within).await?;
    let mut results = client.subscribe(subjects::result(&pc, cmd.request_id)).await?;
    let mut started = client.subscribe(subjects::event_started(&pc, cmd.exec_id)).await?;
    let payload = wire::encode(&cmd).map_err(|e| anyhow!("{e}"))?;
    let subject = subjects::command_pc(&pc, &cmd.job_id);
    let signed = signing::signed_headers(key.as_ref(), &subject, &payload, now_ms());
    js.publish_with_headers(subject, signed, payload.into())
        .await
        .context("cannot publish the command")?
        .await
        .context("JetStream did not store the command (is stream EXEC set up? kanade jetstream setup)")?;
    let answer = tokio::select! {
        r = results.next() => r,
        s = tokio::time::timeout(start_within, started.next()) => match s {
            Err(_) => bail!("{pc} did not start the script within {}s; is it online? try `kanade ping {pc}`", start_within.as_secs()),
            Ok(_) => tokio::time::timeout(Duration::from_secs(cmd.timeout_secs + 30), results.next())
                .await
                .map_err(|_| anyhow!("{pc} started the script but sent no result in time; see `kanade results --pc {pc}`"))?,
        },
    };
    let msg = answer.ok_or_else(|| anyhow!("the connection to NATS closed while waiting for {pc}"))?;
    let result: ExecResult =
        wire::decode(&msg.payload).map_err(|e| anyhow!("{pc} sent a result this CLI cannot read: {e}"))?;
    print!("{}", result.stdout);
    eprint!("{}", result.stderr);
    if result.truncated {
        eprintln!("(output was truncated by the agent)");
    }
    Ok(match (result.status, result.exit_code) {
        (ExecStatus::Succeeded | ExecStatus::Failed, Some(code)) => {
            let status = exit_status(code);
            if i32::from(status) != code {
                eprintln!(
                    "{pc}: the script exited with {code} ({code:#010X}), which no exit status can carry; exiting {status}"
                );
            }
            ExitCode::from(status)
        }
        (status, _) => {
            eprintln!(
                "{pc}: {}{}",
                status.as_str(),
                result.message.map(|m| format!(": {m}")).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    })
}

/// The script `kanade run pc -- a "b c"` means: one argument is the script as written; several
/// are words, each quoted for `shell` when it needs it, so `"b c"` stays one word.
pub fn script_line(shell: Shell, words: &[String]) -> String {
    if let [one] = words {
        return one.clone();
    }
    let plain =
        |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    let quote = |w: &String| -> String {
        if plain(w) {
            return w.clone();
        }
        match shell {
            Shell::Cmd => format!("\"{}\"", w.replace('"', "\"\"")),
            Shell::Powershell | Shell::Pwsh => format!("'{}'", w.replace('\'', "''")),
            _ => format!("'{}'", w.replace('\'', "'\\''")),
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Through the backend (the execution is marked killed, its later waves cancelled, and the kill
/// recorded for PCs that are away); straight over NATS when the backend refuses or cannot be
/// reached (break-glass: runs stop and the kill is recorded, but the backend's status is not
/// changed).
pub async fn kill(exec: &str, global: &Global) -> anyhow::Result<ExitCode> {
    let exec: ExecId =
        exec.parse().map_err(|_| anyhow!("{exec:?} is not an execution id (see kanade executions list)"))?;
    let api = crate::api::Api::new(global)?;
    match api.post::<kanade_shared::api::executions::KillSent>(&format!("/api/executions/{exec}/kill")).await
    {
        Ok(answer) => {
            crate::commands::done(
                global.output,
                &answer,
                &format!(
                    "execution {exec} killed: running PCs stop it, later waves are cancelled, PCs that come back skip it"
                ),
            );
            return Ok(ExitCode::SUCCESS);
        }
        // The backend knows better: no such execution, or it is over.
        Err(e) if matches!(crate::api::error_code(&e), Some("not_found" | "conflict")) => return Err(e),
        Err(e) => eprintln!("warning: {e:#}; sending the kill over NATS instead"),
    }
    let key = signer(global)?;
    let client = connect(global).await?;
    // Recorded first, for PCs that are away now: they skip the exec when they come back.
    let js = async_nats::jetstream::new(client.clone());
    let recorded = match js.get_key_value(kanade_shared::jetstream::EXEC_KILLS).await {
        Ok(kv) => kv
            .put(exec.to_string(), "killed with kanade kill".into())
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let subject = subjects::kill(exec);
    let signed = signing::signed_headers(key.as_ref(), &subject, b"kill", now_ms());
    client.publish_with_headers(subject, signed, "kill".into()).await?;
    client.flush().await.context("cannot send the kill")?;
    println!("kill sent for {exec}: every agent running it stops it");
    match recorded {
        Ok(()) => println!("recorded in exec_kills: PCs that are offline now skip it when they return"),
        Err(e) => eprintln!(
            "warning: the kill could not be recorded in exec_kills ({e}); PCs offline now may still run it when they return (POST /api/executions/{exec}/kill records it)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_boundaries_in_every_shell() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (Shell::Sh, words(&["echo hello; ls"]), "echo hello; ls"),
            (Shell::Sh, words(&["printf", "%s|", "b c", "it's"]), "printf '%s|' 'b c' 'it'\\''s'"),
            (Shell::Bash, words(&["echo", "", "$HOME"]), "echo '' '$HOME'"),
            (Shell::Powershell, words(&["Write-Output", "b c", "it's"]), "Write-Output 'b c' 'it''s'"),
            (Shell::Cmd, words(&["echo", "b c", "say \"hi\""]), "echo \"b c\" \"say \"\"hi\"\"\""),
        ];
        for (shell, input, want) in cases {
            assert_eq!(script_line(shell, &input), want, "{shell:?} {input:?}");
        }
    }

    #[test]
    fn a_crashed_script_never_exits_zero() {
        for (code, want) in [(0, 0), (7, 7), (255, 255), (256, 1), (-1, 1), (0xC000_0005_u32 as i32, 1)] {
            assert_eq!(exit_status(code), want, "{code}");
        }
    }
}
