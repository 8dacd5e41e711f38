//! The broker's auth callout: nats-server asks the backend, on `$SYS.REQ.USER.AUTH`, about every
//! client that is not one of its configured users. An enrolled agent (its PC id and the secret
//! it got at enrolment) is admitted with its own publish/subscribe lists; anyone else is
//! refused. Requests and answers are NATS JWTs (ed25519 over nkeys); the answer is signed with
//! the account key whose public half the broker config names as the callout's `issuer`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::StreamExt;
use kanade_shared::PcId;
use nkeys::KeyPair;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::Db;

pub const SUBJECT: &str = "$SYS.REQ.USER.AUTH";
const QUEUE: &str = "kanade-auth";

#[derive(Debug, thiserror::Error)]
pub enum CalloutError {
    #[error("not a JWT: {0}")]
    Format(String),
    #[error("signature does not verify against its issuer {0}")]
    Signature(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// What a connecting client presented, from the server's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The key the answer's user JWT must be issued to.
    pub user_nkey: String,
    /// The server that asks (the answer's audience; where a kick goes).
    pub server_id: String,
    /// The client's connection id on that server.
    pub client_id: u64,
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize)]
struct RequestClaims {
    iss: String,
    #[serde(default)]
    aud: String,
    nats: RequestBody,
}

#[derive(Deserialize)]
struct RequestBody {
    user_nkey: String,
    server_id: ServerId,
    #[serde(default)]
    client_info: ClientInfo,
    #[serde(default)]
    connect_opts: ConnectOpts,
}

#[derive(Deserialize)]
struct ServerId {
    id: String,
}

#[derive(Deserialize, Default)]
struct ClientInfo {
    #[serde(default)]
    id: u64,
}

#[derive(Deserialize, Default)]
struct ConnectOpts {
    user: Option<String>,
    pass: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decode a server's authorization request and check it is signed by the server key it names.
pub fn decode_request(token: &str) -> Result<AuthRequest, CalloutError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CalloutError::Format("expected three dot-separated parts".into()));
    };
    let claims_bytes = B64.decode(payload).map_err(|e| CalloutError::Format(format!("payload: {e}")))?;
    let sig = B64.decode(sig).map_err(|e| CalloutError::Format(format!("signature: {e}")))?;
    let claims: RequestClaims =
        serde_json::from_slice(&claims_bytes).map_err(|e| CalloutError::Format(format!("claims: {e}")))?;
    // Signed by the server it says it comes from, with a server key, for the callout.
    if claims.iss != claims.nats.server_id.id || !claims.iss.starts_with('N') {
        return Err(CalloutError::Format(format!("issuer {} is not the asking server's key", claims.iss)));
    }
    if claims.aud != "nats-authorization-request" {
        return Err(CalloutError::Format(format!(
            "audience {:?} is not an authorization request",
            claims.aud
        )));
    }
    let server =
        KeyPair::from_public_key(&claims.iss).map_err(|_| CalloutError::Signature(claims.iss.clone()))?;
    let signed = format!("{header}.{payload}");
    server.verify(signed.as_bytes(), &sig).map_err(|_| CalloutError::Signature(claims.iss.clone()))?;
    Ok(AuthRequest {
        user_nkey: claims.nats.user_nkey,
        server_id: claims.nats.server_id.id,
        client_id: claims.nats.client_info.id,
        user: claims.nats.connect_opts.user,
        password: claims.nats.connect_opts.pass,
    })
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn encode(issuer: &KeyPair, claims: &Value) -> Result<String, CalloutError> {
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = b64(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = issuer.sign(signed.as_bytes()).map_err(|e| CalloutError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", b64(&sig)))
}

/// The user JWT admitting `name` into the global account with exactly these permissions
/// (explicit allow lists: a user JWT without them may do everything). Replies only to requests.
pub fn user_jwt(
    issuer: &KeyPair,
    user_nkey: &str,
    name: &str,
    publish: &[String],
    subscribe: &[String],
    now: i64,
) -> Result<String, CalloutError> {
    let claims = json!({
        "iat": now,
        "iss": issuer.public_key(),
        "sub": user_nkey,
        "name": name,
        "aud": "$G",
        "nats": {
            "pub": { "allow": publish },
            "sub": { "allow": subscribe },
            "resp": { "max": 1, "ttl": 0 },
            "subs": -1, "data": -1, "payload": -1,
            "type": "user",
            "version": 2
        }
    });
    encode(issuer, &claims)
}

/// The answer to `req`: the user JWT, or the reason it is refused (logged by the server; the
/// client sees an authorization violation).
pub fn response(
    issuer: &KeyPair,
    req: &AuthRequest,
    verdict: Result<String, String>,
    now: i64,
) -> Result<String, CalloutError> {
    let mut nats = json!({ "type": "authorization_response", "version": 2 });
    match verdict {
        Ok(user_jwt) => nats["jwt"] = json!(user_jwt),
        Err(why) => nats["error"] = json!(why),
    }
    let claims = json!({
        "iat": now,
        "iss": issuer.public_key(),
        "sub": req.user_nkey,
        "aud": req.server_id,
        "nats": nats,
    });
    encode(issuer, &claims)
}

/// Which enrolled agent a request claims to be, or why it cannot be one.
pub fn claimed_agent(req: &AuthRequest) -> Result<(PcId, &str), String> {
    let user = req.user.as_deref().ok_or("no user name: enrolled agents connect as their PC id")?;
    let pc: PcId = user.parse().map_err(|e| format!("user {user:?} is not a PC id: {e}"))?;
    let password = req.password.as_deref().ok_or_else(|| format!("user {pc}: no password"))?;
    Ok((pc, password))
}

/// Answer the broker's authorization requests until `stop`, in a queue group (several backends
/// share the work; any of them answers).
pub async fn serve(
    nats: async_nats::Client,
    db: Db,
    issuer: Arc<KeyPair>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut sub = loop {
        match nats.queue_subscribe(SUBJECT, QUEUE.into()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the broker's auth callout; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(issuer = %issuer.public_key(), "answering the broker's auth callout for enrolled agents");
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => return },
            _ = stop.changed() => return,
        };
        let (nats, db, issuer) = (nats.clone(), db.clone(), issuer.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply else { return };
            let text = String::from_utf8_lossy(&msg.payload);
            let req = match decode_request(&text) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "an auth callout request that does not decode; ignored");
                    return;
                }
            };
            let verdict = admit(&db, &req).await;
            if let Err(why) = &verdict {
                tracing::info!(user = req.user.as_deref().unwrap_or(""), reason = %why, "broker connection refused");
            }
            let verdict = verdict.and_then(|(pc, publish, subscribe)| {
                user_jwt(&issuer, &req.user_nkey, pc.as_str(), &publish, &subscribe, now_secs())
                    .map_err(|e| e.to_string())
            });
            match response(&issuer, &req, verdict, now_secs()) {
                Ok(jwt) => {
                    if let Err(e) = nats.publish(reply, jwt.into()).await {
                        tracing::warn!(error = %e, "cannot answer an auth callout request");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot sign an auth callout answer"),
            }
        });
    }
}

type Admitted = (PcId, Vec<String>, Vec<String>);

async fn admit(db: &Db, req: &AuthRequest) -> Result<Admitted, String> {
    let (pc, password) = claimed_agent(req)?;
    let secret = crate::auth::sha256_hex(password);
    let now = crate::db::now_ms();
    match db.authorize_agent(pc.clone(), secret, req.server_id.clone(), req.client_id, now).await {
        Ok(true) => {
            let account = crate::broker::agent(&pc, "");
            Ok((pc, account.publish, account.subscribe))
        }
        Ok(false) => Err(format!("{pc}: not enrolled, revoked, or a wrong password")),
        Err(e) => Err(format!("{pc}: cannot check the credentials: {e}")),
    }
}

/// Ask the broker (as its system account) to drop connection `client_id` on `server_id`.
/// `Ok(false)`: the server answered that it has no such connection (already gone).
pub async fn kick(system: &async_nats::Client, server_id: &str, client_id: u64) -> Result<bool, String> {
    let subject = format!("$SYS.REQ.SERVER.{server_id}.KICK");
    let payload = json!({ "cid": client_id }).to_string();
    let reply =
        tokio::time::timeout(std::time::Duration::from_secs(5), system.request(subject, payload.into()))
            .await
            .map_err(|_| format!("server {server_id} did not answer the kick request within 5 s"))?
            .map_err(|e| format!("kick request to server {server_id}: {e}"))?;
    let v: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
    match v.get("error") {
        None | Some(Value::Null) => Ok(true),
        Some(e) => {
            let text = e.get("description").and_then(Value::as_str).unwrap_or_default();
            // nats-server: "no such client or leafnode id".
            if text.contains("no such client") {
                Ok(false)
            } else {
                Err(format!("server {server_id} refused the kick: {e}"))
            }
        }
    }
}

/// Every connection of broker user `user` on every server (the broker's CONNZ, asked of all
/// servers at once; each answers within `wait`): `(server_id, client_id)`.
pub async fn connections_of(
    system: &async_nats::Client,
    user: &str,
    wait: std::time::Duration,
) -> Result<Vec<(String, u64)>, String> {
    let inbox = system.new_inbox();
    let mut replies = system.subscribe(inbox.clone()).await.map_err(|e| format!("cannot subscribe: {e}"))?;
    let filter = json!({ "user": user, "limit": 1024 }).to_string();
    system
        .publish_with_reply("$SYS.REQ.SERVER.PING.CONNZ", inbox, filter.into())
        .await
        .map_err(|e| format!("cannot ask the broker for connections: {e}"))?;
    let mut found = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(wait, replies.next()).await {
        let v: Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        let Some(server) = v["server"]["id"].as_str() else { continue };
        for c in v["data"]["connections"].as_array().into_iter().flatten() {
            if let Some(cid) = c["cid"].as_u64() {
                found.push((server.to_owned(), cid));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_request(server: &KeyPair, user: Option<&str>, pass: Option<&str>) -> String {
        let claims = json!({
            "iss": server.public_key(),
            "aud": "nats-authorization-request",
            "sub": "ABC",
            "nats": {
                "user_nkey": "UUSER",
                "server_id": { "name": "n1", "host": "127.0.0.1", "id": server.public_key() },
                "client_info": { "id": 42, "host": "127.0.0.1" },
                "connect_opts": { "user": user, "pass": pass, "protocol": 1 },
                "type": "authorization_request",
                "version": 2
            }
        });
        encode(server, &claims).unwrap()
    }

    #[test]
    fn a_request_is_decoded_and_its_signature_checked() {
        let server = KeyPair::new_server();
        let token = server_request(&server, Some("PC-1"), Some("s3cret"));
        let req = decode_request(&token).unwrap();
        assert_eq!(req.server_id, server.public_key());
        assert_eq!(req.client_id, 42);
        assert_eq!((req.user.as_deref(), req.password.as_deref()), (Some("PC-1"), Some("s3cret")));
        assert_eq!(claimed_agent(&req).unwrap().0.as_str(), "PC-1");

        // One byte of the claims changed: the signature no longer holds.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = B64.decode(&parts[1]).unwrap();
        let at = claims.windows(6).position(|w| w == b"s3cret").unwrap();
        claims[at] = b'S';
        parts[1] = b64(&claims);
        assert!(matches!(decode_request(&parts.join(".")), Err(CalloutError::Signature(_))));
        assert!(matches!(decode_request("a.b"), Err(CalloutError::Format(_))));
        // Signed by a key that is not the server it names: refused before any signature.
        let other = KeyPair::new_server();
        let mut forged: Value =
            serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        forged["iss"] = json!(other.public_key());
        assert!(matches!(decode_request(&encode(&other, &forged).unwrap()), Err(CalloutError::Format(_))));
    }

    #[test]
    fn only_a_pc_id_with_a_password_is_an_agent() {
        let req = |u: Option<&str>, p: Option<&str>| AuthRequest {
            user_nkey: "U".into(),
            server_id: "N".into(),
            client_id: 1,
            user: u.map(str::to_owned),
            password: p.map(str::to_owned),
        };
        assert!(claimed_agent(&req(None, Some("x"))).unwrap_err().contains("no user name"));
        assert!(claimed_agent(&req(Some("a.b"), Some("x"))).unwrap_err().contains("not a PC id"));
        assert!(claimed_agent(&req(Some("PC-1"), None)).unwrap_err().contains("no password"));
    }

    #[test]
    fn answers_are_signed_by_the_issuer_for_the_asking_server() {
        let issuer = KeyPair::new_account();
        let req = AuthRequest {
            user_nkey: KeyPair::new_user().public_key(),
            server_id: KeyPair::new_server().public_key(),
            client_id: 7,
            user: Some("PC-1".into()),
            password: Some("x".into()),
        };
        let user = user_jwt(&issuer, &req.user_nkey, "PC-1", &["a.>".into()], &["b".into()], 1000).unwrap();
        let answer = response(&issuer, &req, Ok(user.clone()), 1000).unwrap();
        let decode = |jwt: &str| -> Value {
            let parts: Vec<&str> = jwt.split('.').collect();
            let signed = format!("{}.{}", parts[0], parts[1]);
            issuer.verify(signed.as_bytes(), &B64.decode(parts[2]).unwrap()).unwrap();
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap()
        };
        let a = decode(&answer);
        assert_eq!(a["aud"], json!(req.server_id));
        assert_eq!(a["sub"], json!(req.user_nkey));
        assert_eq!(a["nats"]["type"], "authorization_response");
        assert_eq!(a["nats"]["jwt"], json!(user));
        let u = decode(&user);
        assert_eq!(u["aud"], "$G");
        assert_eq!(u["name"], "PC-1");
        assert_eq!(u["iss"], json!(issuer.public_key()));
        assert_eq!(u["nats"]["pub"]["allow"], json!(["a.>"]));
        let refused = decode(&response(&issuer, &req, Err("no".into()), 1000).unwrap());
        assert_eq!(refused["nats"]["error"], "no");
        assert!(refused["nats"].get("jwt").is_none());
    }
}
