//! Command signatures. The backend (and an operator's CLI) sign every command they publish with
//! ed25519 over a domain tag, the subject, the signing time and the exact payload bytes; the
//! signature, time and public key travel in message headers. Agents accept a command only when
//! it is signed by a key they pin in their config, recently enough, for the subject it arrived
//! on. A replayed command is stopped by the agent's ledger (one run per exec id); the age limit
//! stops replays of anything older than the EXEC stream could still hold.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

pub const HEADER_SIGNATURE: &str = "Kanade-Signature";
pub const HEADER_SIGNED_AT: &str = "Kanade-Signed-At";
pub const HEADER_KEY: &str = "Kanade-Key";

/// EXEC keeps commands 7 days and a new agent replays them; older signatures are refused.
pub const MAX_AGE_MS: i64 = 8 * 24 * 3_600_000;
/// Clocks differ; a signature this far in the future is still accepted.
pub const MAX_SKEW_MS: i64 = 5 * 60_000;

fn message(subject: &str, signed_at_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut m = format!("kanade-command-v1\n{subject}\n{signed_at_ms}\n").into_bytes();
    m.extend_from_slice(payload);
    m
}

/// Object metadata keys of a signed agent release.
pub const RELEASE_SIGNATURE: &str = "kanade-signature";
pub const RELEASE_KEY: &str = "kanade-key";

fn release_message(release: &str, body: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    format!("kanade-release-v1\n{release}\n{digest}").into_bytes()
}

/// The metadata that makes `body` a signed release `release` (`<version>/<triple>`): an ed25519
/// signature over the release key and the binary's sha256, with the key's public half. Unlike a
/// command's, it has no age: a release stays valid as long as it is published.
pub fn sign_release(key: &SigningKey, release: &str, body: &[u8]) -> [(&'static str, String); 2] {
    let sig = key.sign(&release_message(release, body));
    [(RELEASE_SIGNATURE, B64.encode(sig.to_bytes())), (RELEASE_KEY, encode_public(&key.verifying_key()))]
}

/// Why an agent that pins keys refuses a release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefusal {
    #[error("the release is not signed (publish it through the backend: kanade agent publish)")]
    Unsigned,
    #[error("the release is signed by a key this agent does not trust ({0})")]
    UntrustedKey(String),
    #[error("the release's signature does not match its name or bytes (forged or altered)")]
    Forged,
}

/// Check a downloaded release against its metadata and the pinned keys.
pub fn verify_release(
    trusted: &[VerifyingKey],
    release: &str,
    body: &[u8],
    metadata: &std::collections::HashMap<String, String>,
) -> Result<(), ReleaseRefusal> {
    let (Some(sig), Some(key_text)) = (metadata.get(RELEASE_SIGNATURE), metadata.get(RELEASE_KEY)) else {
        return Err(ReleaseRefusal::Unsigned);
    };
    let key = decode_public(key_text).map_err(|_| ReleaseRefusal::UntrustedKey(key_text.clone()))?;
    if !trusted.contains(&key) {
        return Err(ReleaseRefusal::UntrustedKey(key_text.clone()));
    }
    let sig: [u8; 64] = B64.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or(ReleaseRefusal::Forged)?;
    key.verify(&release_message(release, body), &Signature::from_bytes(&sig))
        .map_err(|_| ReleaseRefusal::Forged)
}

/// A new signing key from the OS's randomness.
pub fn generate() -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness for a key: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A key as kept on disk: the 32-byte seed, base64.
pub fn encode_secret(key: &SigningKey) -> String {
    B64.encode(key.to_bytes())
}

pub fn decode_secret(text: &str) -> Result<SigningKey, String> {
    let bytes = B64.decode(text.trim()).map_err(|_| "a signing key must be base64".to_owned())?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| "a signing key must be 32 bytes".to_owned())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key as configured and shown: base64 of its 32 bytes.
pub fn encode_public(key: &VerifyingKey) -> String {
    B64.encode(key.to_bytes())
}

pub fn decode_public(text: &str) -> Result<VerifyingKey, String> {
    let bytes = B64.decode(text.trim()).map_err(|_| format!("{text:?} is not base64"))?;
    let raw: [u8; 32] =
        bytes.try_into().map_err(|_| format!("{text:?} is not a 32-byte ed25519 public key"))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| format!("{text:?} is not a valid ed25519 public key"))
}

/// The three headers to publish with a command.
pub fn sign(key: &SigningKey, subject: &str, payload: &[u8], now_ms: i64) -> [(&'static str, String); 3] {
    let sig = key.sign(&message(subject, now_ms, payload));
    [
        (HEADER_SIGNATURE, B64.encode(sig.to_bytes())),
        (HEADER_SIGNED_AT, now_ms.to_string()),
        (HEADER_KEY, encode_public(&key.verifying_key())),
    ]
}

/// `sign` as NATS headers; no key, no headers (an unsigned message).
pub fn signed_headers(
    key: Option<&SigningKey>,
    subject: &str,
    payload: &[u8],
    now_ms: i64,
) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in key.map(|k| sign(k, subject, payload, now_ms)).into_iter().flatten() {
        headers.insert(name, value.as_str());
    }
    headers
}

/// `verify` for a received NATS message.
pub fn verify_message(
    trusted: &[VerifyingKey],
    subject: &str,
    payload: &[u8],
    headers: Option<&async_nats::HeaderMap>,
    now_ms: i64,
) -> Result<(), Refusal> {
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    verify(trusted, subject, payload, [get(HEADER_SIGNATURE), get(HEADER_SIGNED_AT), get(HEADER_KEY)], now_ms)
}

/// Why a command is refused. The text goes into the `failed` result the agent publishes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: the command is not signed")]
    Unsigned,
    #[error("refused: signed by a key this agent does not trust ({0})")]
    UntrustedKey(String),
    #[error("refused: the signature does not match the command (forged or altered)")]
    Forged,
    #[error("refused: the signature is {0} hours old, older than the command stream keeps")]
    Expired(i64),
    #[error("refused: the signature is dated in the future")]
    FromTheFuture,
}

/// Check a command's headers (`None` when absent) against the pinned keys.
pub fn verify(
    trusted: &[VerifyingKey],
    subject: &str,
    payload: &[u8],
    headers: [Option<&str>; 3],
    now_ms: i64,
) -> Result<(), Refusal> {
    let [Some(sig), Some(at), Some(key)] = headers else { return Err(Refusal::Unsigned) };
    // The pinned key with these bytes, already decoded: decoding a key (a point decompression)
    // costs about a tenth of a verification, and every command names its key.
    let raw = B64.decode(key.trim()).ok();
    let Some(key) = trusted.iter().find(|k| raw.as_deref() == Some(k.as_bytes().as_slice())) else {
        return Err(Refusal::UntrustedKey(key.to_owned()));
    };
    let at: i64 = at.trim().parse().map_err(|_| Refusal::Forged)?;
    let sig =
        B64.decode(sig.trim()).ok().and_then(|b| Signature::from_slice(&b).ok()).ok_or(Refusal::Forged)?;
    key.verify(&message(subject, at, payload), &sig).map_err(|_| Refusal::Forged)?;
    if at > now_ms + MAX_SKEW_MS {
        return Err(Refusal::FromTheFuture);
    }
    if now_ms - at > MAX_AGE_MS {
        return Err(Refusal::Expired((now_ms - at) / 3_600_000));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_valid_only_as_signed_by_a_pinned_key() {
        let backend = generate().unwrap();
        let rogue = generate().unwrap();
        let trusted = [backend.verifying_key()];
        let meta = |key: &SigningKey, release: &str, body: &[u8]| {
            sign_release(key, release, body).into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let good = meta(&backend, "2.0.0/x86_64-unknown-linux-gnu", b"binary");
        assert_eq!(verify_release(&trusted, "2.0.0/x86_64-unknown-linux-gnu", b"binary", &good), Ok(()));
        assert_eq!(
            verify_release(&trusted, "2.0.0/x86_64-unknown-linux-gnu", b"binarY", &good),
            Err(ReleaseRefusal::Forged)
        );
        assert_eq!(
            verify_release(&trusted, "3.0.0/x86_64-unknown-linux-gnu", b"binary", &good),
            Err(ReleaseRefusal::Forged),
            "a signature does not move to another version"
        );
        let theirs = meta(&rogue, "2.0.0/x86_64-unknown-linux-gnu", b"binary");
        assert!(matches!(
            verify_release(&trusted, "2.0.0/x86_64-unknown-linux-gnu", b"binary", &theirs),
            Err(ReleaseRefusal::UntrustedKey(_))
        ));
        assert_eq!(
            verify_release(&trusted, "2.0.0/x86_64-unknown-linux-gnu", b"binary", &Default::default()),
            Err(ReleaseRefusal::Unsigned)
        );
    }

    const NOW: i64 = 1_800_000_000_000;

    fn headers<'a>(h: &'a [(&'static str, String); 3]) -> [Option<&'a str>; 3] {
        [Some(h[0].1.as_str()), Some(h[1].1.as_str()), Some(h[2].1.as_str())]
    }

    #[test]
    fn signed_commands_verify_and_everything_else_is_refused() {
        let backend = generate().unwrap();
        let rogue = generate().unwrap();
        let trusted = [backend.verifying_key()];
        let subject = "commands.pc.PC-1.hello";
        let payload = br#"{"job_id":"hello"}"#;
        let h = sign(&backend, subject, payload, NOW);
        assert_eq!(verify(&trusted, subject, payload, headers(&h), NOW + 1000), Ok(()));
        // Altered payload, another subject, a lying timestamp.
        assert_eq!(
            verify(&trusted, subject, br#"{"job_id":"evil"}"#, headers(&h), NOW),
            Err(Refusal::Forged)
        );
        assert_eq!(verify(&trusted, "commands.all.hello", payload, headers(&h), NOW), Err(Refusal::Forged));
        let mut later = headers(&h);
        let fake_at = (NOW + 1).to_string();
        later[1] = Some(&fake_at);
        assert_eq!(verify(&trusted, subject, payload, later, NOW), Err(Refusal::Forged));
        // Unsigned, signed by someone else, or with the pinned key claimed but another's signature.
        assert_eq!(verify(&trusted, subject, payload, [None, None, None], NOW), Err(Refusal::Unsigned));
        let r = sign(&rogue, subject, payload, NOW);
        assert_eq!(
            verify(&trusted, subject, payload, headers(&r), NOW),
            Err(Refusal::UntrustedKey(encode_public(&rogue.verifying_key())))
        );
        let garbage = [Some(h[0].1.as_str()), Some(h[1].1.as_str()), Some("not a key!")];
        assert_eq!(
            verify(&trusted, subject, payload, garbage, NOW),
            Err(Refusal::UntrustedKey("not a key!".into()))
        );
        let claimed = encode_public(&backend.verifying_key());
        let mixed = [Some(r[0].1.as_str()), Some(r[1].1.as_str()), Some(claimed.as_str())];
        assert_eq!(verify(&trusted, subject, payload, mixed, NOW), Err(Refusal::Forged));
        // Age limits.
        assert_eq!(verify(&trusted, subject, payload, headers(&h), NOW + MAX_AGE_MS), Ok(()));
        assert_eq!(
            verify(&trusted, subject, payload, headers(&h), NOW + MAX_AGE_MS + 1),
            Err(Refusal::Expired(192))
        );
        assert_eq!(
            verify(&trusted, subject, payload, headers(&h), NOW - MAX_SKEW_MS - 1),
            Err(Refusal::FromTheFuture)
        );
    }

    #[test]
    fn keys_round_trip_as_text() {
        let key = generate().unwrap();
        assert_eq!(decode_secret(&encode_secret(&key)).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(decode_public(&encode_public(&key.verifying_key())).unwrap(), key.verifying_key());
        assert_eq!(decode_public("abcd").unwrap_err(), r#""abcd" is not a 32-byte ed25519 public key"#);
        assert_eq!(decode_public("!!").unwrap_err(), r#""!!" is not base64"#);
    }
}
