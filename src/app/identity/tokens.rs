//! Access, ID and refresh tokens.
//!
//! Access and ID tokens are JWTs signed with HS256 under a key id (`kid`) so keys
//! can rotate: tokens signed by a previous key stay valid until they expire.
//! Verification accepts exactly HS256 (no `none`, no RS/HS confusion), checks
//! `iss`, `aud`, `exp` and the token type, so an ID token is never accepted
//! where an access token is required. Refresh tokens are opaque
//! `<user id>.<session id>.<random>` strings stored only as keyed hashes.

use std::collections::HashMap;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::adapters::secrets::{key_id, keyed_hash, Secrets};

/// Lifetime of access and ID tokens.
pub const TOKEN_TTL_SECS: i64 = 3600;
/// Lifetime of a refresh token (a session).
pub const REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Access,
    Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub token_use: TokenUse,
    /// The session this token belongs to; logout revokes it.
    pub sid: String,
    pub username: String,
    pub email: String,
    pub role: String,
    pub identity_id: String,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub username: String,
    pub email: String,
    pub role: String,
    pub identity_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("wrong token type")]
    WrongUse,
}

pub struct TokenKeys {
    issuer: String,
    audience: String,
    current_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    refresh_key: Vec<u8>,
}

impl TokenKeys {
    /// Keys from the server secret; `previous` secrets still verify tokens.
    pub fn new(secrets: &Secrets, previous: &[Secrets], issuer: &str, audience: &str) -> Self {
        let key = secrets.derive("jwt");
        let current_kid = key_id(&key);
        let mut decoding = HashMap::new();
        decoding.insert(current_kid.clone(), DecodingKey::from_secret(&key));
        for p in previous {
            let k = p.derive("jwt");
            decoding.insert(key_id(&k), DecodingKey::from_secret(&k));
        }
        TokenKeys {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            current_kid,
            encoding: EncodingKey::from_secret(&key),
            decoding,
            refresh_key: secrets.derive("refresh"),
        }
    }

    pub fn issue(
        &self,
        p: &Principal,
        token_use: TokenUse,
        now: i64,
    ) -> Result<String, TokenError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: p.user_id.clone(),
            exp: now + TOKEN_TTL_SECS,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            token_use,
            sid: p.session_id.clone(),
            username: p.username.clone(),
            email: p.email.clone(),
            role: p.role.clone(),
            identity_id: p.identity_id.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and type.
    pub fn verify(&self, token: &str, expected: TokenUse) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid("algorithm not allowed".into()));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or_else(|| TokenError::Invalid("unknown key id".into()))?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        })?;
        if data.claims.token_use != expected {
            return Err(TokenError::WrongUse);
        }
        Ok(data.claims)
    }

    /// A fresh refresh token for a user's session and the hash to store.
    pub fn new_refresh(&self, user_id: &str, session_id: &str) -> (String, String) {
        let random: [u8; 32] = rand::random();
        let token = format!(
            "{user_id}.{session_id}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let hash = self.refresh_hash(&token);
        (token, hash)
    }

    pub fn refresh_hash(&self, token: &str) -> String {
        keyed_hash(&self.refresh_key, token)
    }
}

/// The (user id, session id) a refresh token names.
pub fn refresh_parts(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.splitn(3, '.');
    let (user, sid, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let hex32 = |s: &str| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit());
    (hex32(user) && hex32(sid) && !rest.is_empty()).then_some((user, sid))
}

impl From<Claims> for Principal {
    fn from(c: Claims) -> Self {
        Principal {
            user_id: c.sub,
            session_id: c.sid,
            username: c.username,
            email: c.email,
            role: c.role,
            identity_id: c.identity_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let s = Secrets::load(Some(&"k".repeat(40)), std::path::Path::new("/nonexistent")).unwrap();
        TokenKeys::new(&s, &[], "tessera", "tessera-api")
    }

    fn principal() -> Principal {
        Principal {
            user_id: "u".into(),
            session_id: "s".into(),
            username: "alice".into(),
            email: "a@example.com".into(),
            role: "user".into(),
            identity_id: "us-east-2:x".into(),
        }
    }

    #[test]
    fn round_trip_and_type_check() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        let access = k.issue(&principal(), TokenUse::Access, now).unwrap();
        let id = k.issue(&principal(), TokenUse::Id, now).unwrap();
        assert_eq!(k.verify(&access, TokenUse::Access).unwrap().sub, "u");
        assert_eq!(k.verify(&id, TokenUse::Access), Err(TokenError::WrongUse));
        let old = k
            .issue(&principal(), TokenUse::Access, now - 2 * TOKEN_TTL_SECS)
            .unwrap();
        assert_eq!(k.verify(&old, TokenUse::Access), Err(TokenError::Expired));
    }

    #[test]
    fn rejects_alg_none_and_foreign_keys() {
        let k = keys();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let payload = b64.encode(format!(
            r#"{{"iss":"tessera","aud":"tessera-api","sub":"u","exp":{},"iat":0,"jti":"j","token_use":"access","sid":"s","username":"a","email":"e","role":"admin","identity_id":"i"}}"#,
            now + 100
        ));
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            payload
        );
        assert!(k.verify(&none, TokenUse::Access).is_err());
        let other = TokenKeys::new(
            &Secrets::load(Some(&"z".repeat(40)), std::path::Path::new("/x")).unwrap(),
            &[],
            "tessera",
            "tessera-api",
        );
        let forged = other.issue(&principal(), TokenUse::Access, now).unwrap();
        assert!(k.verify(&forged, TokenUse::Access).is_err());
        let wrong_aud = TokenKeys::new(
            &Secrets::load(Some(&"k".repeat(40)), std::path::Path::new("/x")).unwrap(),
            &[],
            "tessera",
            "someone-else",
        )
        .issue(&principal(), TokenUse::Access, now)
        .unwrap();
        assert!(k.verify(&wrong_aud, TokenUse::Access).is_err());
    }
}
