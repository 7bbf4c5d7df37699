//! Mailer adapters: SMTP (lettre) when `SMTP_URL` is set, else `.eml` files in
//! `<data dir>/mail/` plus a log line. lettre builds the message in both cases,
//! so headers are encoded the same way and cannot be injected.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tessera_domain::mail::{MailError, Mailer, OutgoingMail};

fn build(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .to
        .as_str()
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Failed(e.to_string()))?;
    // Subjects are ours, but a user-supplied name could reach one: strip line
    // breaks anyway.
    let subject: String = mail.subject.chars().filter(|c| !c.is_control()).collect();
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|e| MailError::Failed(e.to_string()))
}

/// Writes each message as an `.eml` file.
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(FileMailer { dir, from })
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let message = build(&self.from, &mail)?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let path = self.dir.join(name);
        tokio::fs::write(&path, message.formatted())
            .await
            .map_err(|e| MailError::Failed(e.to_string()))?;
        tracing::info!(to = %mail.to.as_str(), subject = %mail.subject, file = %path.display(), "mail written");
        Ok(())
    }
}

/// Sends through an SMTP relay (`smtp://[user:password@]host[:port]`, plain
/// SMTP: a relay on the same host or private network).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(url: &str, from: Mailbox) -> Result<Self, MailError> {
        let bad = || {
            MailError::Failed("SMTP_URL must look like smtp://[user:password@]host[:port]".into())
        };
        let rest = url.strip_prefix("smtp://").ok_or_else(bad)?;
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let hostport = hostport.trim_end_matches('/');
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (hostport, 25),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if let Some((user, password)) = auth.and_then(|a| a.split_once(':')) {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    user.to_owned(),
                    password.to_owned(),
                ));
        }
        let transport = builder.build();
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let message = build(&self.from, &mail)?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Failed(e.to_string()))?;
        tracing::info!(to = %mail.to.as_str(), subject = %mail.subject, "mail sent");
        Ok(())
    }
}
