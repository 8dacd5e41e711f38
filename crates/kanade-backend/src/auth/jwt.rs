//! Session tokens: compact JWTs signed with HMAC-SHA256 (HS256). Only what kanade issues is
//! accepted: the header must be exactly HS256/JWT, the signature is checked in constant time
//! before the claims are read, and `exp` is enforced.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// Issued at / expires, seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
    /// When the password was last set (ms): a password change retires older sessions.
    pub pwd: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token expired; sign in again")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

pub fn encode(claims: &Claims, secret: &[u8]) -> String {
    let body = serde_json::to_vec(claims).expect("claims serialize");
    let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(m.finalize().into_bytes()))
}

pub fn decode(token: &str, secret: &[u8], now_secs: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if B64.decode(header).ok().as_deref() != Some(HEADER.as_bytes()) {
        return Err(JwtError::Malformed);
    }
    let sig = B64.decode(sig).map_err(|_| JwtError::Malformed)?;
    let mut m = mac(secret);
    m.update(format!("{header}.{body}").as_bytes());
    m.verify_slice(&sig).map_err(|_| JwtError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(&B64.decode(body).map_err(|_| JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)?;
    if claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(exp: i64) -> Claims {
        Claims { sub: "alice".into(), iat: 100, exp, pwd: 7 }
    }

    #[test]
    fn round_trip_and_every_rejection() {
        let token = encode(&claims(200), KEY);
        assert_eq!(decode(&token, KEY, 150), Ok(claims(200)));
        assert_eq!(decode(&token, KEY, 200), Err(JwtError::Expired));
        assert_eq!(decode(&token, b"another key of the right length!", 150), Err(JwtError::BadSignature));
        // Claims edited after signing.
        let (head, rest) = token.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let forged_body =
            B64.encode(serde_json::to_vec(&Claims { sub: "root".into(), ..claims(200) }).unwrap());
        assert_eq!(decode(&format!("{head}.{forged_body}.{sig}"), KEY, 150), Err(JwtError::BadSignature));
        // "alg: none" and other headers are refused outright.
        let none = format!("{}.{forged_body}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(decode(&none, KEY, 150), Err(JwtError::Malformed));
        assert_eq!(decode("a.b", KEY, 150), Err(JwtError::Malformed));
        assert_eq!(decode("", KEY, 150), Err(JwtError::Malformed));
    }
}
