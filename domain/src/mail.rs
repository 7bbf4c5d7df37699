//! The mailer port: SMTP in production, `.eml` files in the embedded default.

use async_trait::async_trait;

use crate::identity::Email;

/// A plain-text mail to one recipient. The recipient is a validated [`Email`]
/// and adapters encode the subject, so no field can inject a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: Email,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail could not be sent: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError>;
}
