//! Command handlers of the identity core. Each loads the `User` aggregate,
//! asks the domain to decide, appends the events (retrying on a concurrent
//! change, since every decision here is safe to re-make) and returns the answer.

pub mod credentials;
pub mod passwords;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tessera_domain::identity::{
    CodePurpose, Decision, Email, LoginAdmission, Password, Role, User, UserEvent, Username,
};
use tessera_domain::mail::{Mailer, OutgoingMail};
use tessera_domain::DomainError;
use tessera_projections::users::{self, UserRow};

use crate::adapters::secrets::{keyed_hash, Secrets};
use crate::app::error::ServiceError;
use crate::app::executor::Executor;
use credentials::{CredentialIssuer, StorageCredentials};
use tokens::{refresh_parts, TokenKeys, TOKEN_TTL_SECS};
pub use tokens::{Principal, TokenUse};

type Result<T> = std::result::Result<T, ServiceError>;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Public base URL of the API, for links in mails (never the `Host` header).
    pub public_url: String,
    /// Region part of `identity_id`.
    pub region: String,
    /// Token issuer and audience.
    pub issuer: String,
    pub audience: String,
    /// The invitation mail template (`{username}` and `{link}` are filled in).
    pub invite_template: String,
    /// The sender of every mail.
    pub mail_from: String,
}

/// What a successful login or refresh hands back.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub principal: Principal,
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub credentials: StorageCredentials,
}

pub struct Identity {
    exec: Arc<Executor>,
    google: crate::adapters::google::GoogleVerifier,
    tokens: TokenKeys,
    credentials: CredentialIssuer,
    code_key: Vec<u8>,
    mailer: Arc<dyn Mailer>,
    config: IdentityConfig,
    /// Session id → still active. Filled on first sight of a session, updated by
    /// this process's sign-outs and by the log follower for other processes'.
    sessions: RwLock<HashMap<String, bool>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Identity {
    pub fn new(
        exec: Arc<Executor>,
        secrets: &Secrets,
        previous: &[Secrets],
        mailer: Arc<dyn Mailer>,
        config: IdentityConfig,
        google: crate::adapters::google::GoogleVerifier,
    ) -> Self {
        Identity {
            google,
            tokens: TokenKeys::new(secrets, previous, &config.issuer, &config.audience),
            credentials: CredentialIssuer::new(secrets),
            code_key: secrets.derive("codes"),
            exec,
            mailer,
            config,
            sessions: RwLock::new(HashMap::new()),
        }
    }

    pub fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }

    /// The mailer, for other services that write to users.
    pub fn mailer(&self) -> Arc<dyn Mailer> {
        self.mailer.clone()
    }

    pub fn credentials(&self) -> &CredentialIssuer {
        &self.credentials
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    fn code_hash(&self, user_id: &str, purpose: CodePurpose, code: &str) -> String {
        keyed_hash(
            &self.code_key,
            &format!("{purpose:?}:{user_id}:{}", code.trim()),
        )
    }

    /// Looks a user up by username or email.
    pub async fn find(&self, login: &str) -> Result<Option<UserRow>> {
        let mut conn = self.exec.store().pool().acquire().await?;
        Ok(users::find(&mut conn, login).await?)
    }

    /// Runs a decision against the user's current state (through the
    /// executor, which retries when another request changed the user in
    /// between). Returns the state after the events; a refusal's events are
    /// appended (and observed) before it is returned.
    async fn execute(&self, user_id: &str, decide: impl Fn(&User) -> Decision) -> Result<User> {
        let done = self
            .exec
            .execute::<User, (), _, _>(user_id, user_id, |user| {
                let user =
                    user.ok_or_else(|| DomainError::NotFound("User does not exist.".into()))?;
                Ok(decide(user))
            })
            .await?;
        for e in &done.events {
            self.observe(e);
        }
        done.state()?
            .ok_or_else(|| ServiceError::bug("a user's stream folds to nothing"))
    }

    /// Keeps the session cache in step with events this process appends.
    fn observe(&self, e: &UserEvent) {
        let mut cache = match self.sessions.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        match e {
            UserEvent::SessionStarted { session_id, .. } => {
                cache.insert(session_id.clone(), true);
            }
            UserEvent::RefreshReuseDetected { session_id, .. } => {
                cache.insert(session_id.clone(), false);
            }
            UserEvent::SignedOut { .. } => {
                // Every session of the user: drop them so the next check reloads.
                cache.clear();
            }
            _ => {}
        }
    }

    /// Forgets cached sessions after another process signed a user out (called
    /// by the log follower).
    pub fn forget_sessions(&self) {
        let mut cache = match self.sessions.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        cache.clear();
    }

    fn generate_code() -> String {
        use rand::Rng;
        format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
    }

    async fn mail(&self, to: &Email, subject: &str, body: String) {
        let mail = OutgoingMail {
            to: to.clone(),
            subject: subject.to_owned(),
            body,
        };
        if let Err(e) = self.mailer.send(mail).await {
            tracing::error!(error = %e, "sending mail failed");
        }
    }

    /// Registers a user. `confirmed`: dialects without email confirmation.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
        role: Role,
        confirmed: bool,
    ) -> Result<User> {
        let username = Username::parse(username)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let password_hash = passwords::hash(password.expose().to_owned())
            .await
            .map_err(|e| ServiceError::internal("hashing a password", e))?;
        let user_id = new_id();
        let at = now();
        let mut events = vec![UserEvent::UserRegistered {
            user_id: user_id.clone(),
            username: username.clone(),
            email: email.clone(),
            password_hash,
            role,
            identity_id: format!("{}:{}", self.config.region, uuid::Uuid::new_v4()),
            confirmed,
            at,
        }];
        let code = Self::generate_code();
        if !confirmed {
            events.push(UserEvent::CodeIssued {
                purpose: CodePurpose::Confirm,
                challenge_id: new_id(),
                code_hash: self.code_hash(&user_id, CodePurpose::Confirm, &code),
                expires_at: at + CodePurpose::Confirm.lifetime_secs(),
            });
        }
        let registered = self
            .exec
            .execute::<User, (), _, _>(&user_id, &user_id, |existing| match existing {
                Some(_) => Err(ServiceError::bug("a fresh user id is taken")),
                None => Ok(Decision::ok(events.clone())),
            })
            .await
            .map_err(|e| {
                e.on_constraint(users::EMAIL_TAKEN, || {
                    DomainError::UsernameExists(
                        "An account with the given email already exists.".into(),
                    )
                    .into()
                })
                .on_constraint(users::USERNAME_TAKEN, || {
                    DomainError::UsernameExists("User already exists".into()).into()
                })
            })?
            .state()?;
        if !confirmed {
            self.mail(
                &email,
                "Your tessera confirmation code",
                format!(
                    "Hello {},\n\nyour confirmation code is {code}. It is valid for 24 hours.\n",
                    username.as_str()
                ),
            )
            .await;
        }
        registered.ok_or_else(|| ServiceError::bug("a registration folds to nothing"))
    }

    /// Confirms a sign-up with the mailed code.
    pub async fn confirm(&self, username: &str, code: &str) -> Result<()> {
        let row = self
            .find(username)
            .await?
            .ok_or(DomainError::CodeMismatch)?;
        let hash = self.code_hash(&row.user_id, CodePurpose::Confirm, code);
        let t = now();
        self.execute(&row.user_id, |u| u.confirm(&hash, t)).await?;
        Ok(())
    }

    /// Issues and mails a fresh code. Unknown users get the same (silent) answer.
    pub async fn send_code(&self, login: &str, purpose: CodePurpose) -> Result<Option<String>> {
        let Some(row) = self.find(login).await? else {
            return Ok(None);
        };
        let code = Self::generate_code();
        let hash = self.code_hash(&row.user_id, purpose, &code);
        let challenge = new_id();
        let t = now();
        let user = match self
            .execute(&row.user_id, |u| {
                u.issue_code(purpose, &challenge, &hash, t)
            })
            .await
        {
            Ok(u) => u,
            // Already confirmed: nothing to send, and nothing to reveal.
            Err(ServiceError::Domain(DomainError::Invalid(_))) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (subject, what, minutes) = match purpose {
            CodePurpose::Confirm => ("Your tessera confirmation code", "confirmation", 24 * 60),
            CodePurpose::Reset => ("Reset your tessera password", "password reset", 60),
            CodePurpose::Otp => ("Your tessera login code", "login", 10),
        };
        let mut body = format!(
            "Hello {},\n\nyour {what} code is {code}. It is valid for {minutes} minutes and can be used once.\n",
            user.username.as_str()
        );
        if purpose == CodePurpose::Reset {
            body.push_str(&format!(
                "\nOr open this link to choose a new password:\n{}/users/reset-password/verify-token?token={}.{}.{}\n",
                self.config.public_url.trim_end_matches('/'),
                row.user_id,
                challenge,
                code
            ));
        }
        self.mail(&user.email, subject, body).await;
        Ok(Some(challenge))
    }

    /// Username-or-email and password login.
    pub async fn login(&self, login: &str, password: &str) -> Result<LoginOutcome> {
        let incorrect = || DomainError::NotAuthorized("Incorrect username or password.".into());
        let Some(row) = self.find(login).await? else {
            // Same work as for a known user.
            passwords::verify(password.to_owned(), None).await;
            return Err(incorrect().into());
        };
        let attempt = new_id();
        let t = now();
        let user = self
            .execute(&row.user_id, |u| match u.admit_login(&attempt, t) {
                LoginAdmission::Admitted(e) => Decision {
                    events: vec![e],
                    outcome: Ok(()),
                },
                LoginAdmission::Refused(e) => Decision {
                    events: vec![],
                    outcome: Err(e),
                },
            })
            .await?;
        let ok = passwords::verify(password.to_owned(), Some(user.password_hash.clone())).await;
        let session = new_id();
        let (refresh, refresh_hash) = self.tokens.new_refresh(&row.user_id, &session);
        let t = now();
        let user = self
            .execute(&row.user_id, |u| {
                u.finish_login(&attempt, ok, &session, &refresh_hash, t)
            })
            .await?;
        self.outcome(&user, &session, refresh)
    }

    /// Starts a session for a user proven by other means (a one-time code, a
    /// federated identity).
    pub async fn start_session(&self, user_id: &str) -> Result<LoginOutcome> {
        let session = new_id();
        let (refresh, refresh_hash) = self.tokens.new_refresh(user_id, &session);
        let t = now();
        let user = self
            .execute(user_id, |u| u.start_session(&session, &refresh_hash, t))
            .await?;
        self.outcome(&user, &session, refresh)
    }

    fn outcome(&self, user: &User, session: &str, refresh: String) -> Result<LoginOutcome> {
        let principal = Principal {
            user_id: user.user_id.clone(),
            session_id: session.to_owned(),
            username: user.username.as_str().to_owned(),
            email: user.email.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            identity_id: user.identity_id.clone(),
        };
        let t = now();
        let access_token = self.tokens.issue(&principal, TokenUse::Access, t)?;
        let id_token = self.tokens.issue(&principal, TokenUse::Id, t)?;
        let credentials = self.credentials.issue(
            &user.identity_id,
            &user.user_id,
            session,
            t + TOKEN_TTL_SECS,
        );
        Ok(LoginOutcome {
            principal,
            access_token,
            id_token,
            refresh_token: refresh,
            expires_in: TOKEN_TTL_SECS,
            credentials,
        })
    }

    /// Rotates a refresh token. A reused (already rotated) token revokes its
    /// session. `username`, when given, must own the token.
    pub async fn refresh(&self, username: Option<&str>, token: &str) -> Result<LoginOutcome> {
        let invalid =
            || ServiceError::Domain(DomainError::NotAuthorized("Invalid Refresh Token".into()));
        let (user_id, session) = refresh_parts(token).ok_or_else(invalid)?;
        let (user_id, session) = (user_id.to_owned(), session.to_owned());
        if let Some(name) = username.filter(|n| !n.is_empty()) {
            let row = self.find(name).await?.ok_or_else(invalid)?;
            if row.user_id != user_id {
                return Err(invalid());
            }
        }
        let presented = self.tokens.refresh_hash(token);
        let (next, next_hash) = self.tokens.new_refresh(&user_id, &session);
        let t = now();
        let user = self
            .execute(&user_id, |u| u.refresh(&session, &presented, &next_hash, t))
            .await?;
        self.outcome(&user, &session, next)
    }

    /// Signs in with a Google ID token. A first sign-in creates a confirmed
    /// account for the (Google-verified) email, with an unusable random
    /// password; later ones find it by email.
    pub async fn login_google(&self, id_token: &str) -> Result<LoginOutcome> {
        let claims = self.google.verify(id_token).await.map_err(|e| match e {
            crate::adapters::google::GoogleError::Invalid(_) => {
                ServiceError::Domain(DomainError::NotAuthorized("Invalid Google ID token".into()))
            }
            // The caller's mistake to ask, not our fault: a 400.
            crate::adapters::google::GoogleError::NotConfigured => ServiceError::Domain(
                DomainError::Invalid("Google sign-in is not enabled on this server.".into()),
            ),
            other => ServiceError::internal("verifying a Google ID token", other),
        })?;
        let email = Email::parse(&claims.email)?;
        let user_id = match self.find(email.as_str()).await? {
            Some(row) => row.user_id,
            None => {
                let local: String = email
                    .as_str()
                    .split('@')
                    .next()
                    .unwrap_or("user")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .take(40)
                    .collect();
                let username = format!("{local}_{}", &new_id()[..8]);
                let password = format!("{}{}", new_id(), new_id());
                match self
                    .register(&username, email.as_str(), &password, Role::User, true)
                    .await
                {
                    Ok(u) => u.user_id,
                    // A concurrent first sign-in won the race: use its account.
                    Err(ServiceError::Domain(DomainError::UsernameExists(_))) => {
                        self.find(email.as_str())
                            .await?
                            .ok_or_else(|| ServiceError::bug("a signed-in account vanished"))?
                            .user_id
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.start_session(&user_id).await
    }

    /// Global sign-out: every session of the user ends now.
    pub async fn logout(&self, principal: &Principal) -> Result<()> {
        let t = now();
        self.execute(&principal.user_id, |u| u.sign_out(t)).await?;
        Ok(())
    }

    /// Sets a new password with a reset code; signs the user out everywhere.
    pub async fn reset_password(
        &self,
        login: &str,
        challenge: Option<&str>,
        code: &str,
        new_password: &str,
    ) -> Result<()> {
        let row = self.find(login).await?.ok_or(DomainError::CodeMismatch)?;
        self.reset_password_for(&row.user_id, challenge, code, new_password)
            .await
    }

    /// [`Identity::reset_password`] for a known user id.
    pub async fn reset_password_for(
        &self,
        user_id: &str,
        challenge: Option<&str>,
        code: &str,
        new_password: &str,
    ) -> Result<()> {
        let password = Password::parse(new_password)?;
        if !is_id(user_id) {
            return Err(DomainError::ExpiredCode.into());
        }
        let presented = self.code_hash(user_id, CodePurpose::Reset, code);
        let hash = passwords::hash(password.expose().to_owned())
            .await
            .map_err(|e| ServiceError::internal("hashing a password", e))?;
        let t = now();
        self.execute(user_id, |u| {
            u.reset_password(challenge, &presented, &hash, t)
        })
        .await
        .map_err(not_found_as_expired)?;
        Ok(())
    }

    /// Checks a mailed reset token (`<user id>.<challenge>.<code>`) without
    /// using it up; a wrong code still counts against it.
    pub async fn check_reset_token(&self, token: &str) -> Result<()> {
        let (user_id, challenge, code) =
            reset_token_parts(token).ok_or(DomainError::ExpiredCode)?;
        let presented = self.code_hash(user_id, CodePurpose::Reset, code);
        let t = now();
        self.execute(user_id, |u| {
            let d = u.redeem_code(CodePurpose::Reset, Some(challenge), &presented, t);
            match d.outcome {
                // Valid: record nothing, the token stays usable.
                Ok(()) => Decision {
                    events: vec![],
                    outcome: Ok(()),
                },
                Err(_) => d,
            }
        })
        .await
        .map_err(not_found_as_expired)?;
        Ok(())
    }

    /// Sets a new password with a mailed reset token.
    pub async fn reset_with_token(&self, token: &str, new_password: &str) -> Result<()> {
        let (user_id, challenge, code) =
            reset_token_parts(token).ok_or(DomainError::ExpiredCode)?;
        self.reset_password_for(user_id, Some(challenge), code, new_password)
            .await
    }

    /// Uses up a one-time login code.
    pub async fn verify_otp(&self, user_id: &str, challenge: &str, code: &str) -> Result<()> {
        let presented = self.code_hash(user_id, CodePurpose::Otp, code);
        let t = now();
        self.execute(user_id, |u| {
            u.redeem_code(CodePurpose::Otp, Some(challenge), &presented, t)
        })
        .await?;
        Ok(())
    }

    /// Checks a bearer token and that its session is still active. One HMAC and
    /// a cache look-up; the user's stream is read only for a session not seen yet.
    /// Whether login session `sid` of `user_id` is alive (cached per process;
    /// sign-outs clear the cache).
    pub async fn session_active(&self, user_id: &str, sid: &str) -> Result<bool> {
        let cached = match self.sessions.read() {
            Ok(c) => c.get(sid).copied(),
            Err(p) => p.into_inner().get(sid).copied(),
        };
        if let Some(active) = cached {
            return Ok(active);
        }
        let active = self
            .exec
            .load::<User>(user_id)
            .await?
            .state
            .is_some_and(|u| u.session_active(sid));
        let mut cache = match self.sessions.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        cache.insert(sid.to_owned(), active);
        Ok(active)
    }

    pub async fn authenticate(&self, token: &str, expected: TokenUse) -> Result<Principal> {
        let claims = self.tokens.verify(token, expected)?;
        let active = self.session_active(&claims.sub, &claims.sid).await?;
        if !active {
            return Err(DomainError::NotAuthorized("Access Token has been revoked".into()).into());
        }
        Ok(claims.into())
    }

    /// Sends the invitation mail, within the daily cap.
    pub async fn send_invite(&self, principal: &Principal, destination: &str) -> Result<()> {
        let to = Email::parse(destination)?;
        let t = now();
        self.execute(&principal.user_id, |u| u.send_invite(t))
            .await?;
        let body = self
            .config
            .invite_template
            .replace("{username}", &principal.username)
            .replace("{link}", &self.config.public_url);
        self.mail(
            &to,
            &format!("{} invites you to tessera", principal.username),
            body,
        )
        .await;
        Ok(())
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn reset_token_parts(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.trim().splitn(3, '.');
    let (user, challenge, code) = (parts.next()?, parts.next()?, parts.next()?);
    (is_id(user) && is_id(challenge) && code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()))
        .then_some((user, challenge, code))
}

/// A token naming no user is just an invalid token.
fn not_found_as_expired(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Domain(DomainError::NotFound(_)) => DomainError::ExpiredCode.into(),
        other => other,
    }
}

/// The embedded S3 endpoint checks login credentials through the identity
/// core: the signed grant, its expiry, and that its session is alive.
#[async_trait::async_trait]
impl crate::adapters::storage::embedded::LoginCredentials for Identity {
    fn secret_for(&self, access_key: &str) -> Option<String> {
        self.credentials.secret_for(access_key)
    }

    async fn identity_of(
        &self,
        access_key: &str,
        session_token: &str,
        now: i64,
    ) -> std::result::Result<Option<String>, String> {
        let Some((grant, _)) = self.credentials.verify(access_key, session_token, now) else {
            return Ok(None);
        };
        let alive = self
            .session_active(&grant.user_id, &grant.sid)
            .await
            .map_err(|e| e.to_string())?;
        Ok(alive.then_some(grant.identity_id))
    }
}
