//! Validated identity values: a `Username`, `Email` or `Password` that exists is
//! valid, so the rest of the code never re-checks.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// 3–128 characters: letters, digits and `._@+-`. Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, DomainError> {
        let s = raw.trim();
        let ok_len = (3..=128).contains(&s.chars().count());
        let ok_chars = s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
        if !ok_len || !ok_chars {
            return Err(DomainError::Invalid(
                "username must be 3-128 characters of letters, digits and . _ @ + -".into(),
            ));
        }
        Ok(Username(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness and look-ups use.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An email address: one `@`, a dotted domain, no whitespace or control
/// characters (so it can never inject a mail header), at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, DomainError> {
        let s = raw.trim();
        let invalid = || DomainError::Invalid(format!("{s:?} is not a valid email address"));
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains(['<', '>', '(', ')', ',', ';', ':', '\\', '"', '[', ']', '@']);
        if !domain_ok || !local_ok {
            return Err(invalid());
        }
        Ok(Email(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A password as typed: 8–256 characters, not one of the most common passwords.
/// No composition rules (OWASP ASVS 2.1).
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, DomainError> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(DomainError::InvalidPassword(
                "Password must be at least 8 characters long.".into(),
            ));
        }
        if n > 256 {
            return Err(DomainError::InvalidPassword(
                "Password must be at most 256 characters long.".into(),
            ));
        }
        if super::common_passwords::is_common(raw) {
            return Err(DomainError::InvalidPassword(
                "Password is too common; choose another.".into(),
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What a user may do. Only an operator grants `Admin`; registering never can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Merchant,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Merchant => "merchant",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "merchant" => Some(Role::Merchant),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a one-time code is for; each has its own lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    /// Sign-up confirmation: 24 hours.
    Confirm,
    /// Password reset: 1 hour.
    Reset,
    /// One-time login code: 10 minutes.
    Otp,
}

impl CodePurpose {
    pub fn lifetime_secs(self) -> i64 {
        match self {
            CodePurpose::Confirm => 24 * 3600,
            CodePurpose::Reset => 3600,
            CodePurpose::Otp => 600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice_01").is_ok());
        assert!(Username::parse("example@gmail.com").is_ok());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("bad name").is_err());
        assert!(Username::parse("evil\r\nBcc: x").is_err());
        assert_eq!(
            Username::parse("Alice").map(|u| u.key()).ok(),
            Some("alice".into())
        );
    }

    #[test]
    fn emails_reject_header_injection() {
        assert!(Email::parse("a@example.com").is_ok());
        assert!(Email::parse("a@example.com\r\nBcc: victim@x.org").is_err());
        assert!(Email::parse("a@localhost").is_err());
        assert!(Email::parse("<a@b.c>").is_err());
        assert!(Email::parse("a@@b.c").is_err());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse("password123").is_err());
        assert!(Password::parse("correct horse battery").is_ok());
        assert_eq!(
            format!("{:?}", Password::parse("correct horse battery").ok()),
            "Some(Password(***))"
        );
    }
}
