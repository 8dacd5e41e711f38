//! `kanade jetstream setup | status`, straight against NATS.

use std::process::ExitCode;

use anyhow::Context;
use async_nats::jetstream;
use kanade_shared::jetstream::{Outcome, ensure_jetstream_resources, jetstream_status};

use crate::cli::{Global, JetstreamCommand};
use crate::output;

pub async fn run(cmd: JetstreamCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let client = kanade_shared::nats::connect_once(&global.nats_url, &global.broker(), "kanade-cli").await?;
    let js = jetstream::new(client);
    match cmd {
        JetstreamCommand::Setup { replicas } => setup(&js, replicas, global).await,
        JetstreamCommand::Status => status(&js, global).await,
    }
}

async fn setup(js: &jetstream::Context, replicas: usize, global: &Global) -> anyhow::Result<ExitCode> {
    let reports = ensure_jetstream_resources(js, replicas).await.context("jetstream setup failed")?;
    let rows = reports
        .iter()
        .map(|r| {
            let (outcome, detail) = match &r.outcome {
                Outcome::Created => ("created", String::new()),
                Outcome::Unchanged => ("unchanged", String::new()),
                Outcome::Updated { changes } => ("updated", changes.join("; ")),
                Outcome::Kept { differences, reason } => {
                    ("kept", format!("{}: {reason}", differences.join("; ")))
                }
            };
            vec![r.kind.as_str().to_owned(), r.name.to_owned(), outcome.to_owned(), detail]
        })
        .collect::<Vec<_>>();
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({ "kind": r[0], "name": r[1], "outcome": r[2], "detail": r[3] }))
        .collect();
    output::print(global.output, &json, &["KIND", "NAME", "OUTCOME", "DETAIL"], rows);
    Ok(ExitCode::SUCCESS)
}

async fn status(js: &jetstream::Context, global: &Global) -> anyhow::Result<ExitCode> {
    let statuses =
        jetstream_status(js).await.map_err(|e| anyhow::anyhow!("cannot read JetStream status: {e}"))?;
    let rows = statuses
        .iter()
        .map(|s| {
            if !s.present {
                return vec![s.kind.to_owned(), s.name.to_owned(), "missing".into()];
            }
            vec![
                s.kind.to_owned(),
                s.name.to_owned(),
                "ok".into(),
                s.messages.to_string(),
                output::bytes(s.bytes as i64),
                output::bytes(s.max_bytes),
                s.max_age.clone(),
                if s.max_messages_per_subject > 0 {
                    s.max_messages_per_subject.to_string()
                } else {
                    "-".into()
                },
                s.consumers.to_string(),
            ]
        })
        .collect();
    let headers =
        ["KIND", "NAME", "STATE", "MESSAGES", "BYTES", "MAX BYTES", "MAX AGE", "PER SUBJECT", "CONSUMERS"];
    output::print(global.output, &statuses, &headers, rows);
    let missing = statuses.iter().filter(|s| !s.present).count();
    if missing > 0 {
        eprintln!("{missing} resource(s) missing: run `kanade jetstream setup`");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
