//! Temporary storage credentials handed out at login (`access_key`,
//! `secret_key`, `session_key`), in the manner of STS: the session key is a
//! signed, expiring statement of who may touch which prefix; the secret key is
//! derived from it, so the object-storage endpoint can check a SigV4 signature
//! without a database read.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::adapters::secrets::{keyed_hash, Secrets};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The access key id.
    pub ak: String,
    /// The user's storage identity: the only prefix (`<bucket>/<identity_id>/`)
    /// these credentials reach.
    pub identity_id: String,
    pub user_id: String,
    /// The login session; logout revokes it and with it these credentials.
    pub sid: String,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_key: String,
    pub expires_at: i64,
}

pub struct CredentialIssuer {
    key: Vec<u8>,
}

impl CredentialIssuer {
    pub fn new(secrets: &Secrets) -> Self {
        CredentialIssuer {
            key: secrets.derive("storage-credentials"),
        }
    }

    pub fn issue(
        &self,
        identity_id: &str,
        user_id: &str,
        sid: &str,
        exp: i64,
    ) -> StorageCredentials {
        let random: [u8; 10] = rand::random();
        let ak = format!("TSK{}", hex::encode_upper(random));
        let grant = Grant {
            ak: ak.clone(),
            identity_id: identity_id.to_owned(),
            user_id: user_id.to_owned(),
            sid: sid.to_owned(),
            exp,
        };
        let body = B64.encode(serde_json::to_vec(&grant).unwrap_or_default());
        let sig = keyed_hash(&self.key, &body);
        StorageCredentials {
            secret_key: self.secret(&ak),
            access_key: ak,
            session_key: format!("{body}.{sig}"),
            expires_at: exp,
        }
    }

    fn secret(&self, ak: &str) -> String {
        keyed_hash(&self.key, &format!("secret:{ak}"))
    }

    /// The secret key of an access key we issued (the signature check needs
    /// it before the security token is looked at); `None` for foreign keys.
    /// The key alone grants nothing: [`Self::verify`] must accept the session
    /// key too.
    pub fn secret_for(&self, access_key: &str) -> Option<String> {
        let hex = access_key.strip_prefix("TSK")?;
        (hex.len() == 20 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.secret(access_key))
    }

    /// Checks a session key for `access_key` at time `now`; returns the grant and
    /// the secret key to verify request signatures with.
    pub fn verify(&self, access_key: &str, session_key: &str, now: i64) -> Option<(Grant, String)> {
        let (body, sig) = session_key.rsplit_once('.')?;
        if !tessera_domain::identity::constant_time_eq(&keyed_hash(&self.key, body), sig) {
            return None;
        }
        let grant: Grant = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        if grant.ak != access_key || grant.exp <= now {
            return None;
        }
        let secret = self.secret(&grant.ak);
        Some((grant, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_verify_expire_and_resist_tampering() {
        let s = Secrets::load(Some(&"k".repeat(40)), std::path::Path::new("/x")).unwrap();
        let issuer = CredentialIssuer::new(&s);
        let c = issuer.issue("us-east-2:abc", "u1", "s1", 1000);
        let (grant, secret) = issuer.verify(&c.access_key, &c.session_key, 999).unwrap();
        assert_eq!(grant.identity_id, "us-east-2:abc");
        assert_eq!(secret, c.secret_key);
        assert_eq!(issuer.secret_for(&c.access_key), Some(c.secret_key.clone()));
        assert_eq!(issuer.secret_for("AKIAEXAMPLE"), None);
        assert!(
            issuer.verify(&c.access_key, &c.session_key, 1000).is_none(),
            "expired"
        );
        assert!(issuer.verify("TSKOTHER", &c.session_key, 1).is_none());
        // Changing the prefix in the statement breaks the signature.
        let (body, sig) = c.session_key.rsplit_once('.').unwrap();
        let mut g: Grant = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        g.identity_id = "us-east-2:victim".into();
        let forged = format!("{}.{sig}", B64.encode(serde_json::to_vec(&g).unwrap()));
        assert!(issuer.verify(&c.access_key, &forged, 1).is_none());
    }
}
