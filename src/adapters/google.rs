//! Google sign-in: verifies a Google ID token against Google's published keys
//! (a JWKS URL, configurable so tests and air-gapped setups serve their own).
//!
//! Accepted only with RS256 under a key id the JWKS lists, `iss` Google's,
//! `aud` our client id, unexpired, and a verified email.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Keys are refetched this often, and at most this often for an unknown kid.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const REFETCH_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
pub struct GoogleClaims {
    pub sub: String,
    pub email: String,
    #[serde(default)]
    pub email_verified: serde_json::Value,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("Google sign-in is not configured (TESSERA_GOOGLE_CLIENT_ID)")]
    NotConfigured,
    #[error("invalid Google ID token: {0}")]
    Invalid(String),
    #[error("Google's signing keys are unavailable: {0}")]
    Keys(String),
}

struct Keys {
    fetched: Option<Instant>,
    by_kid: HashMap<String, DecodingKey>,
}

pub struct GoogleVerifier {
    client_id: Option<String>,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

impl GoogleVerifier {
    pub fn new(client_id: Option<String>, jwks_url: String) -> Self {
        GoogleVerifier {
            client_id: client_id.filter(|c| !c.is_empty()),
            jwks_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Keys {
                fetched: None,
                by_kid: HashMap::new(),
            }),
        }
    }

    fn cached(&self, kid: &str) -> (Option<DecodingKey>, Option<Instant>) {
        let keys = match self.keys.read() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        (keys.by_kid.get(kid).cloned(), keys.fetched)
    }

    async fn refresh(&self) -> Result<(), GoogleError> {
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| GoogleError::Keys(e.to_string()))?
            .json()
            .await
            .map_err(|e| GoogleError::Keys(e.to_string()))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) {
                by_kid.insert(kid, key);
            }
        }
        let mut keys = match self.keys.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        *keys = Keys {
            fetched: Some(Instant::now()),
            by_kid,
        };
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, GoogleError> {
        let (key, fetched) = self.cached(kid);
        let stale = fetched.is_none_or(|f| f.elapsed() > KEYS_MAX_AGE);
        let may_refetch = fetched.is_none_or(|f| f.elapsed() > REFETCH_PAUSE);
        match key {
            Some(k) if !stale => return Ok(k),
            None if !may_refetch => return Err(GoogleError::Invalid("unknown key id".into())),
            _ => {}
        }
        self.refresh().await?;
        self.cached(kid)
            .0
            .ok_or_else(|| GoogleError::Invalid("unknown key id".into()))
    }

    pub async fn verify(&self, token: &str) -> Result<GoogleClaims, GoogleError> {
        let client_id = self
            .client_id
            .as_deref()
            .ok_or(GoogleError::NotConfigured)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| GoogleError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(GoogleError::Invalid("algorithm not allowed".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| GoogleError::Invalid("no key id".into()))?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[client_id]);
        v.set_issuer(&["accounts.google.com", "https://accounts.google.com"]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<GoogleClaims>(token, &key, &v)
            .map_err(|e| GoogleError::Invalid(e.to_string()))?
            .claims;
        let verified = claims.email_verified.as_bool() == Some(true)
            || claims.email_verified.as_str() == Some("true");
        if !verified {
            return Err(GoogleError::Invalid("email not verified".into()));
        }
        Ok(claims)
    }
}
