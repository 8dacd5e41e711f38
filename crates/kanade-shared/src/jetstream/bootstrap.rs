//! `ensure_jetstream_resources`: create what is missing, update what drifted, leave the rest.
//! Safe to run from every backend at every start and from `kanade jetstream setup`: a second run
//! sends no updates, and a resource the server refuses to update is reported, never fatal.

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, kv, object_store, stream};

use super::resources::{Resource, ResourceKind, definitions, drift, immutable_drift, reserved_bytes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated {
        changes: Vec<String>,
    },
    Unchanged,
    /// The resource exists with settings kanade could not bring in line; it is used as it is.
    Kept {
        differences: Vec<String>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ResourceKind,
    pub name: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "cannot read {kind} {name:?} on the broker: {source} (is JetStream enabled on the server? start nats-server with -js)"
    )]
    Lookup {
        kind: &'static str,
        name: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error(
        "cannot create {kind} {name:?}: the broker's JetStream storage limit is smaller than what kanade's streams reserve ({reserved_gib} GiB in all); set `jetstream {{ max_file_store: 32GB }}` or more in nats-server's config (its default is 75% of the free disk) or free disk space ({source})"
    )]
    Storage {
        kind: &'static str,
        name: &'static str,
        reserved_gib: i64,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot create {kind} {name:?}: {source}")]
    Create {
        kind: &'static str,
        name: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

/// Create or update every kanade resource. Returns one report per resource, in definition order.
pub async fn ensure_jetstream_resources(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<Vec<Report>, BootstrapError> {
    let mut reports = Vec::new();
    for resource in definitions(replicas) {
        let outcome = ensure_one(js, &resource).await?;
        match &outcome {
            Outcome::Created => {
                tracing::info!(name = resource.name, "created {}", resource.kind.as_str())
            }
            Outcome::Updated { changes } => {
                tracing::info!(name = resource.name, ?changes, "updated {}", resource.kind.as_str())
            }
            Outcome::Kept { differences, reason } => tracing::warn!(
                name = resource.name,
                ?differences,
                reason,
                "{} differs from kanade's settings and was left as it is",
                resource.kind.as_str()
            ),
            Outcome::Unchanged => {}
        }
        reports.push(Report { kind: resource.kind, name: resource.name, outcome });
    }
    Ok(reports)
}

async fn ensure_one(js: &jetstream::Context, r: &Resource) -> Result<Outcome, BootstrapError> {
    let lookup_err =
        |source: async_nats::Error| BootstrapError::Lookup { kind: r.kind.as_str(), name: r.name, source };
    match existing_config(js, r).await.map_err(lookup_err)? {
        Some(existing) => Ok(reconcile(js, r, &existing).await),
        None => match create(js, r).await {
            Ok(()) => Ok(Outcome::Created),
            // Another backend created it between our lookup and our create: reconcile with theirs.
            Err(create_err) => match existing_config(js, r).await.map_err(lookup_err)? {
                Some(existing) => Ok(reconcile(js, r, &existing).await),
                // JetStream's "insufficient storage resources": the limits do not fit the server's.
                None if create_err.to_string().contains("10047") => Err(BootstrapError::Storage {
                    kind: r.kind.as_str(),
                    name: r.name,
                    // One copy of everything: what one server holds at most, whatever the replicas.
                    reserved_gib: (reserved_bytes(1) + (1 << 30) - 1) >> 30,
                    source: create_err,
                }),
                None => {
                    Err(BootstrapError::Create { kind: r.kind.as_str(), name: r.name, source: create_err })
                }
            },
        },
    }
}

async fn existing_config(
    js: &jetstream::Context,
    r: &Resource,
) -> Result<Option<stream::Config>, async_nats::Error> {
    match js.get_stream(r.stream_name()).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => Ok(None),
            _ => Err(err.into()),
        },
    }
}

async fn reconcile(js: &jetstream::Context, r: &Resource, existing: &stream::Config) -> Outcome {
    let changes = drift(r, existing);
    let fixed = immutable_drift(existing);
    if changes.is_empty() {
        return if fixed.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Kept { differences: fixed, reason: "the server cannot change these in place".into() }
        };
    }
    match js.update_stream(r.apply_to(existing)).await {
        Ok(_) if fixed.is_empty() => Outcome::Updated { changes },
        Ok(_) => Outcome::Kept {
            differences: changes.into_iter().chain(fixed).collect(),
            reason: "limits updated; the server cannot change the rest in place".into(),
        },
        Err(err) => Outcome::Kept {
            differences: changes.into_iter().chain(fixed).collect(),
            reason: format!("the server refused the update: {err}"),
        },
    }
}

async fn create(js: &jetstream::Context, r: &Resource) -> Result<(), async_nats::Error> {
    match r.kind {
        ResourceKind::Stream => {
            js.create_stream(r.stream_config()).await?;
        }
        ResourceKind::KeyValue => {
            js.create_key_value(kv::Config {
                bucket: r.name.to_owned(),
                description: r.description.to_owned(),
                history: r.max_messages_per_subject,
                max_age: r.max_age,
                max_bytes: r.max_bytes,
                num_replicas: r.replicas,
                republish: r.republish(),
                ..Default::default()
            })
            .await?;
        }
        ResourceKind::ObjectStore => {
            js.create_object_store(object_store::Config {
                bucket: r.name.to_owned(),
                description: Some(r.description.to_owned()),
                max_age: r.max_age,
                max_bytes: r.max_bytes,
                num_replicas: r.replicas,
                ..Default::default()
            })
            .await?;
        }
    }
    Ok(())
}
