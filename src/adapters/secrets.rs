//! The server's secret keys: one master secret, from `TESSERA_SECRET` or a file
//! created once in the data dir, and keys derived from it per purpose, so
//! `tessera serve` and `tessera worker` on one data dir agree without setup.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct Secrets {
    master: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("TESSERA_SECRET must be at least 32 characters")]
    TooShort,
    #[error("cannot read or create the secret file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl Secrets {
    /// `configured` (TESSERA_SECRET) if given, else `<data_dir>/secret.key`,
    /// created with 32 random bytes (mode 0600) on first use.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Secrets, SecretsError> {
        if let Some(s) = configured.filter(|s| !s.is_empty()) {
            if s.len() < 32 {
                return Err(SecretsError::TooShort);
            }
            return Ok(Secrets {
                master: s.as_bytes().to_vec(),
            });
        }
        let path = data_dir.join("secret.key");
        let err = |source| SecretsError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(hexed) => Ok(Secrets {
                master: hex::decode(hexed.trim())
                    .map_err(|e| err(std::io::Error::other(e.to_string())))?,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                let tmp = data_dir.join(format!("secret.key.{}", std::process::id()));
                std::fs::write(&tmp, hex::encode(bytes)).map_err(err)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                        .map_err(err)?;
                }
                // Two processes starting at once: the first rename wins, both
                // read the winner's key.
                if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
                    std::fs::rename(&tmp, &path).map_err(err)?;
                }
                let _ = std::fs::remove_file(&tmp);
                Self::load(None, data_dir)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A 32-byte key for one purpose ("jwt", "codes", "storage", …).
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        self.mac(purpose.as_bytes(), b"tessera-key-derivation")
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; new_from_slice cannot fail.
        let mut m = match HmacSha256::new_from_slice(&self.master) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        m.update(label);
        m.update(b"\0");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

/// A keyed hash, hex: how codes and refresh tokens are stored.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Short public id of a key, for the JWT `kid` header.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(Sha256::digest(key)).chars().take(12).collect()
}
