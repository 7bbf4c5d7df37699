//! Shared pieces of the auth dialects: reading bearer tokens, per-client rate
//! limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

use super::ApiError;
use crate::app::identity::{Identity, Principal, TokenUse};

/// The token of an `Authorization` header: `Bearer <token>`, or the bare token
/// (as users-api.md sends it).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get("authorization")?.to_str().ok()?.trim();
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim();
    (!token.is_empty()).then_some(token)
}

/// Authenticates the request's access token.
pub async fn access(req: &HttpRequest, identity: &Identity) -> Result<Principal, ApiError> {
    let token = bearer(req).ok_or_else(|| {
        ApiError::Unauthorized("NotAuthorizedException: Missing Authorization header".into())
    })?;
    Ok(identity.authenticate(token, TokenUse::Access).await?)
}

/// The client's address for rate limiting: the TCP peer. `X-Forwarded-For` is
/// believed only from configured proxies, so a client cannot forge its way
/// around a limit.
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or(Some(peer))
}

/// A fixed-window counter per key: at most `limit` hits per `window`.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    hits: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a hit; refuses once the key is over its limit in this window.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut hits = match self.hits.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        if hits.len() > 100_000 {
            let window = self.window;
            hits.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = hits.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.limit {
            let retry = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(ApiError::TooManyRequests(format!(
                "TooManyRequestsException: Too many requests; retry in {} seconds.",
                retry.as_secs().max(1)
            )));
        }
        Ok(())
    }
}

/// The limits every auth dialect shares.
pub struct AuthLimits {
    pub trusted_proxies: Vec<IpAddr>,
    /// Credential and code endpoints per client address.
    pub per_ip: RateLimiter,
    /// The same per account name, whatever address it comes from.
    pub per_account: RateLimiter,
}

impl AuthLimits {
    pub fn new(
        trusted_proxies: Vec<IpAddr>,
        per_ip_per_minute: u32,
        per_account_per_minute: u32,
    ) -> Self {
        AuthLimits {
            trusted_proxies,
            per_ip: RateLimiter::new(per_ip_per_minute, Duration::from_secs(60)),
            per_account: RateLimiter::new(per_account_per_minute, Duration::from_secs(60)),
        }
    }

    /// Applies both limits to one request naming `account`.
    pub fn check(&self, req: &HttpRequest, account: &str) -> Result<(), ApiError> {
        let ip = client_ip(req, &self.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        self.per_ip.check(&ip)?;
        if !account.is_empty() {
            self.per_account.check(&account.trim().to_lowercase())?;
        }
        Ok(())
    }
}
