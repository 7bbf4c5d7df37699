//! The `User` aggregate: registration, confirmation, passwords, one-time codes,
//! login attempts and lockout, sessions and their refresh tokens.
//!
//! Every decision is a pure function of the current state, the command and the
//! facts the adapter supplies (the time, random ids, hashes it computed). Secrets
//! never enter events: passwords, codes and refresh tokens are stored as hashes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::values::{CodePurpose, Email, Role, Username};
use super::{constant_time_eq, lockout_secs, INVITES_PER_DAY, MAX_CODE_TRIES, MAX_FAILED_LOGINS};
use crate::convert::count_u32;
use crate::error::DomainError;

pub const STREAM_TYPE: &str = "user";

/// An in-flight login attempt older than this counts as failed (its process died).
const ATTEMPT_TIMEOUT_SECS: i64 = 30;

/// Facts about a user. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UserEvent {
    UserRegistered {
        user_id: String,
        username: Username,
        email: Email,
        /// argon2id PHC string.
        password_hash: String,
        role: Role,
        /// `<region>:<uuid>`: the user's storage prefix.
        identity_id: String,
        /// Dialects without email confirmation register confirmed users.
        confirmed: bool,
        at: i64,
    },
    CodeIssued {
        purpose: CodePurpose,
        challenge_id: String,
        /// Keyed hash of the 6-digit code.
        code_hash: String,
        expires_at: i64,
    },
    CodeRejected {
        purpose: CodePurpose,
        challenge_id: String,
    },
    CodeConsumed {
        purpose: CodePurpose,
        challenge_id: String,
    },
    UserConfirmed {
        at: i64,
    },
    PasswordChanged {
        password_hash: String,
        at: i64,
    },
    LoginAttempted {
        attempt_id: String,
        at: i64,
    },
    LoginFailed {
        attempt_id: String,
        at: i64,
    },
    /// The password was right but the login cannot complete (unconfirmed email).
    LoginDeferred {
        attempt_id: String,
    },
    SessionStarted {
        /// The attempt this login resolved (none for code or federated logins).
        attempt_id: Option<String>,
        session_id: String,
        /// Hash of the session's first refresh token.
        refresh_hash: String,
        at: i64,
    },
    RefreshRotated {
        session_id: String,
        refresh_hash: String,
        at: i64,
    },
    /// A refresh token was presented again after it had been rotated: the whole
    /// session is revoked.
    RefreshReuseDetected {
        session_id: String,
        at: i64,
    },
    /// Global sign-out: every session ends; their tokens stop working.
    SignedOut {
        at: i64,
    },
    InviteSent {
        at: i64,
    },
}

impl crate::aggregate::DomainEvent for UserEvent {
    const STREAM_TYPE: &'static str = STREAM_TYPE;

    fn event_type(&self) -> &'static str {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::CodeIssued { .. } => "CodeIssued",
            UserEvent::CodeRejected { .. } => "CodeRejected",
            UserEvent::CodeConsumed { .. } => "CodeConsumed",
            UserEvent::UserConfirmed { .. } => "UserConfirmed",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
            UserEvent::LoginAttempted { .. } => "LoginAttempted",
            UserEvent::LoginFailed { .. } => "LoginFailed",
            UserEvent::LoginDeferred { .. } => "LoginDeferred",
            UserEvent::SessionStarted { .. } => "SessionStarted",
            UserEvent::RefreshRotated { .. } => "RefreshRotated",
            UserEvent::RefreshReuseDetected { .. } => "RefreshReuseDetected",
            UserEvent::SignedOut { .. } => "SignedOut",
            UserEvent::InviteSent { .. } => "InviteSent",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCode {
    pub challenge_id: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub wrong_tries: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    pub current_hash: String,
    /// Hashes of refresh tokens already rotated away.
    pub used_hashes: Vec<String>,
    pub revoked: bool,
}

/// The folded state of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub username: Username,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub identity_id: String,
    pub confirmed: bool,
    pub codes: BTreeMap<CodePurpose, ActiveCode>,
    pub failures: u32,
    pub last_failure_at: i64,
    pub in_flight: BTreeMap<String, i64>,
    pub sessions: BTreeMap<String, Session>,
    pub invites: Vec<i64>,
}

/// Events to append plus the answer to give. A refused command may still
/// record facts (a wrong code counts against the code).
pub type Decision = crate::aggregate::Decision<UserEvent>;

/// Whether a login attempt may check the password now.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginAdmission {
    Admitted(UserEvent),
    Refused(DomainError),
}

impl crate::aggregate::Aggregate for User {
    type Event = UserEvent;

    fn fold(_: &str, events: &[UserEvent]) -> Option<User> {
        User::fold(events)
    }
}

impl User {
    /// Folds a stream; `None` when it does not start with `UserRegistered`.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a UserEvent>) -> Option<User> {
        let mut iter = events.into_iter();
        let mut user = match iter.next()? {
            UserEvent::UserRegistered {
                user_id,
                username,
                email,
                password_hash,
                role,
                identity_id,
                confirmed,
                ..
            } => User {
                user_id: user_id.clone(),
                username: username.clone(),
                email: email.clone(),
                password_hash: password_hash.clone(),
                role: *role,
                identity_id: identity_id.clone(),
                confirmed: *confirmed,
                codes: BTreeMap::new(),
                failures: 0,
                last_failure_at: 0,
                in_flight: BTreeMap::new(),
                sessions: BTreeMap::new(),
                invites: Vec::new(),
            },
            _ => return None,
        };
        for e in iter {
            user.apply(e);
        }
        Some(user)
    }

    pub fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserRegistered { .. } => {}
            UserEvent::CodeIssued {
                purpose,
                challenge_id,
                code_hash,
                expires_at,
            } => {
                self.codes.insert(
                    *purpose,
                    ActiveCode {
                        challenge_id: challenge_id.clone(),
                        code_hash: code_hash.clone(),
                        expires_at: *expires_at,
                        wrong_tries: 0,
                    },
                );
            }
            UserEvent::CodeRejected {
                purpose,
                challenge_id,
            } => {
                if let Some(c) = self.codes.get_mut(purpose) {
                    if &c.challenge_id == challenge_id {
                        c.wrong_tries += 1;
                    }
                }
            }
            UserEvent::CodeConsumed { purpose, .. } => {
                self.codes.remove(purpose);
            }
            UserEvent::UserConfirmed { .. } => self.confirmed = true,
            UserEvent::PasswordChanged { password_hash, .. } => {
                self.password_hash = password_hash.clone();
                self.failures = 0;
            }
            UserEvent::LoginAttempted { attempt_id, at } => {
                self.in_flight.insert(attempt_id.clone(), *at);
            }
            UserEvent::LoginFailed { attempt_id, at } => {
                self.in_flight.remove(attempt_id);
                self.failures += 1;
                self.last_failure_at = *at;
            }
            UserEvent::LoginDeferred { attempt_id } => {
                self.in_flight.remove(attempt_id);
            }
            UserEvent::SessionStarted {
                attempt_id,
                session_id,
                refresh_hash,
                ..
            } => {
                if let Some(a) = attempt_id {
                    self.in_flight.remove(a);
                }
                self.failures = 0;
                self.sessions.insert(
                    session_id.clone(),
                    Session {
                        current_hash: refresh_hash.clone(),
                        used_hashes: Vec::new(),
                        revoked: false,
                    },
                );
            }
            UserEvent::RefreshRotated {
                session_id,
                refresh_hash,
                ..
            } => {
                if let Some(s) = self.sessions.get_mut(session_id) {
                    let old = std::mem::replace(&mut s.current_hash, refresh_hash.clone());
                    s.used_hashes.push(old);
                }
            }
            UserEvent::RefreshReuseDetected { session_id, .. } => {
                if let Some(s) = self.sessions.get_mut(session_id) {
                    s.revoked = true;
                }
            }
            UserEvent::SignedOut { .. } => {
                for s in self.sessions.values_mut() {
                    s.revoked = true;
                }
            }
            UserEvent::InviteSent { at } => self.invites.push(*at),
        }
    }

    /// Until when the account is locked (0: not locked).
    pub fn locked_until(&self) -> i64 {
        match lockout_secs(self.failures) {
            0 => 0,
            secs => self.last_failure_at + secs,
        }
    }

    /// Admits a login attempt, or refuses it without looking at the password.
    /// The attempt is recorded *before* the password is checked, and attempts in
    /// flight count against the remaining budget, so parallel guesses cannot
    /// check more passwords than a serial attacker could.
    pub fn admit_login(&self, attempt_id: &str, now: i64) -> LoginAdmission {
        let locked_until = self.locked_until();
        if locked_until > now {
            return LoginAdmission::Refused(DomainError::LimitExceeded(format!(
                "Password attempts exceeded; try again in {} seconds.",
                locked_until - now
            )));
        }
        let in_flight = count_u32(
            self.in_flight
                .values()
                .filter(|at| now - **at < ATTEMPT_TIMEOUT_SECS)
                .count(),
        );
        let stale = count_u32(self.in_flight.len()) - in_flight;
        let failures = self.failures + stale;
        let budget = if failures < MAX_FAILED_LOGINS {
            MAX_FAILED_LOGINS - failures
        } else {
            1
        };
        if in_flight >= budget {
            return LoginAdmission::Refused(DomainError::TooManyRequests(
                "Too many login attempts in progress; try again shortly.".into(),
            ));
        }
        LoginAdmission::Admitted(UserEvent::LoginAttempted {
            attempt_id: attempt_id.to_owned(),
            at: now,
        })
    }

    /// Resolves an admitted attempt. `password_ok` is the adapter's verdict.
    pub fn finish_login(
        &self,
        attempt_id: &str,
        password_ok: bool,
        session_id: &str,
        refresh_hash: &str,
        now: i64,
    ) -> Decision {
        if !password_ok {
            return Decision::refuse(
                vec![UserEvent::LoginFailed {
                    attempt_id: attempt_id.to_owned(),
                    at: now,
                }],
                DomainError::NotAuthorized("Incorrect username or password.".into()),
            );
        }
        if !self.confirmed {
            // Right password, unconfirmed email: the attempt closes without
            // counting as a failure.
            return Decision::refuse(
                vec![UserEvent::LoginDeferred {
                    attempt_id: attempt_id.to_owned(),
                }],
                DomainError::NotConfirmed,
            );
        }
        Decision::ok(vec![UserEvent::SessionStarted {
            attempt_id: Some(attempt_id.to_owned()),
            session_id: session_id.to_owned(),
            refresh_hash: refresh_hash.to_owned(),
            at: now,
        }])
    }

    /// Starts a session without a password (a verified one-time code or a
    /// federated login).
    pub fn start_session(&self, session_id: &str, refresh_hash: &str, now: i64) -> Decision {
        if !self.confirmed {
            return Decision::refuse(vec![], DomainError::NotConfirmed);
        }
        Decision::ok(vec![UserEvent::SessionStarted {
            attempt_id: None,
            session_id: session_id.to_owned(),
            refresh_hash: refresh_hash.to_owned(),
            at: now,
        }])
    }

    /// Issues a code for `purpose`, replacing any earlier one.
    pub fn issue_code(
        &self,
        purpose: CodePurpose,
        challenge_id: &str,
        code_hash: &str,
        now: i64,
    ) -> Decision {
        if purpose == CodePurpose::Confirm && self.confirmed {
            return Decision::refuse(
                vec![],
                DomainError::Invalid("User is already confirmed.".into()),
            );
        }
        Decision::ok(vec![UserEvent::CodeIssued {
            purpose,
            challenge_id: challenge_id.to_owned(),
            code_hash: code_hash.to_owned(),
            expires_at: now + purpose.lifetime_secs(),
        }])
    }

    /// Checks a presented code (as its keyed hash). A wrong code is recorded;
    /// the fifth wrong try, expiry or reuse makes the code dead. `challenge_id`,
    /// when given, must name the current code.
    pub fn redeem_code(
        &self,
        purpose: CodePurpose,
        challenge_id: Option<&str>,
        presented_hash: &str,
        now: i64,
    ) -> Decision {
        let Some(code) = self.codes.get(&purpose) else {
            return Decision::refuse(vec![], DomainError::ExpiredCode);
        };
        if challenge_id.is_some_and(|c| c != code.challenge_id) {
            return Decision::refuse(vec![], DomainError::ExpiredCode);
        }
        if code.expires_at <= now || code.wrong_tries >= MAX_CODE_TRIES {
            return Decision::refuse(vec![], DomainError::ExpiredCode);
        }
        if !constant_time_eq(&code.code_hash, presented_hash) {
            return Decision::refuse(
                vec![UserEvent::CodeRejected {
                    purpose,
                    challenge_id: code.challenge_id.clone(),
                }],
                DomainError::CodeMismatch,
            );
        }
        Decision::ok(vec![UserEvent::CodeConsumed {
            purpose,
            challenge_id: code.challenge_id.clone(),
        }])
    }

    /// Confirms the email with the sign-up code.
    pub fn confirm(&self, presented_hash: &str, now: i64) -> Decision {
        if self.confirmed {
            return Decision::refuse(
                vec![],
                DomainError::NotAuthorized(
                    "User cannot be confirmed. Current status is CONFIRMED".into(),
                ),
            );
        }
        let mut d = self.redeem_code(CodePurpose::Confirm, None, presented_hash, now);
        if d.outcome.is_ok() {
            d.events.push(UserEvent::UserConfirmed { at: now });
        }
        d
    }

    /// Sets a new password with a reset code; every session ends.
    pub fn reset_password(
        &self,
        challenge_id: Option<&str>,
        presented_hash: &str,
        new_password_hash: &str,
        now: i64,
    ) -> Decision {
        let mut d = self.redeem_code(CodePurpose::Reset, challenge_id, presented_hash, now);
        if d.outcome.is_ok() {
            d.events.push(UserEvent::PasswordChanged {
                password_hash: new_password_hash.to_owned(),
                at: now,
            });
            if !self.confirmed {
                // Receiving the reset code proves the mailbox.
                d.events.push(UserEvent::UserConfirmed { at: now });
            }
            d.events.push(UserEvent::SignedOut { at: now });
        }
        d
    }

    /// Rotates a session's refresh token. Presenting an already-rotated token
    /// revokes the session (someone holds a copy).
    pub fn refresh(
        &self,
        session_id: &str,
        presented_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Decision {
        let invalid = || DomainError::NotAuthorized("Invalid Refresh Token".into());
        let Some(s) = self.sessions.get(session_id) else {
            return Decision::refuse(vec![], invalid());
        };
        if s.revoked {
            return Decision::refuse(vec![], invalid());
        }
        if constant_time_eq(&s.current_hash, presented_hash) {
            return Decision::ok(vec![UserEvent::RefreshRotated {
                session_id: session_id.to_owned(),
                refresh_hash: new_hash.to_owned(),
                at: now,
            }]);
        }
        if s.used_hashes
            .iter()
            .any(|h| constant_time_eq(h, presented_hash))
        {
            return Decision::refuse(
                vec![UserEvent::RefreshReuseDetected {
                    session_id: session_id.to_owned(),
                    at: now,
                }],
                invalid(),
            );
        }
        Decision::refuse(vec![], invalid())
    }

    /// Whether tokens of `session_id` are still good.
    pub fn session_active(&self, session_id: &str) -> bool {
        self.sessions.get(session_id).is_some_and(|s| !s.revoked)
    }

    pub fn sign_out(&self, now: i64) -> Decision {
        Decision::ok(vec![UserEvent::SignedOut { at: now }])
    }

    /// Records an invite mail, within the daily cap.
    pub fn send_invite(&self, now: i64) -> Decision {
        let today = self.invites.iter().filter(|at| now - **at < 86_400).count();
        if today >= INVITES_PER_DAY {
            return Decision::refuse(
                vec![],
                DomainError::LimitExceeded(format!(
                    "At most {INVITES_PER_DAY} invitation mails per day."
                )),
            );
        }
        Decision::ok(vec![UserEvent::InviteSent { at: now }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(confirmed: bool) -> User {
        let e = UserEvent::UserRegistered {
            user_id: "u1".into(),
            username: Username::parse("alice").unwrap_or_else(|_| unreachable!()),
            email: Email::parse("alice@example.com").unwrap_or_else(|_| unreachable!()),
            password_hash: "h".into(),
            role: Role::User,
            identity_id: "us-east-2:x".into(),
            confirmed,
            at: 0,
        };
        User::fold([&e]).unwrap_or_else(|| unreachable!())
    }

    fn apply_all(u: &mut User, events: &[UserEvent]) {
        for e in events {
            u.apply(e);
        }
    }

    #[test]
    fn five_failures_lock_and_parallel_attempts_share_the_budget() {
        let mut u = registered(true);
        // Five attempts admitted at once: the sixth is refused before any
        // password is checked.
        for i in 0..5 {
            match u.admit_login(&format!("a{i}"), 100) {
                LoginAdmission::Admitted(e) => u.apply(&e),
                LoginAdmission::Refused(e) => panic!("attempt {i} refused: {e}"),
            }
        }
        assert!(matches!(
            u.admit_login("a5", 100),
            LoginAdmission::Refused(DomainError::TooManyRequests(_))
        ));
        for i in 0..5 {
            let d = u.finish_login(&format!("a{i}"), false, "s", "r", 101);
            apply_all(&mut u, &d.events);
        }
        assert_eq!(u.failures, 5);
        assert!(matches!(
            u.admit_login("a6", 102),
            LoginAdmission::Refused(DomainError::LimitExceeded(_))
        ));
        // After the lock: one attempt at a time.
        assert!(matches!(
            u.admit_login("a7", 101 + 61),
            LoginAdmission::Admitted(_)
        ));
    }

    #[test]
    fn codes_die_after_five_wrong_tries_and_expire() {
        let mut u = registered(false);
        let d = u.issue_code(CodePurpose::Confirm, "c1", "right", 0);
        apply_all(&mut u, &d.events);
        for _ in 0..5 {
            let d = u.confirm("wrong", 10);
            assert_eq!(d.outcome, Err(DomainError::CodeMismatch));
            apply_all(&mut u, &d.events);
        }
        assert_eq!(
            u.confirm("right", 10).outcome,
            Err(DomainError::ExpiredCode)
        );
        let d = u.issue_code(CodePurpose::Confirm, "c2", "right", 20);
        apply_all(&mut u, &d.events);
        assert_eq!(
            u.confirm("right", 20 + 24 * 3600).outcome,
            Err(DomainError::ExpiredCode)
        );
        let d = u.confirm("right", 30);
        assert!(d.outcome.is_ok());
        apply_all(&mut u, &d.events);
        assert!(u.confirmed);
        // Single use.
        assert!(u.codes.is_empty());
    }

    #[test]
    fn refresh_reuse_revokes_the_session() {
        let mut u = registered(true);
        let d = u.start_session("s1", "r1", 0);
        apply_all(&mut u, &d.events);
        let d = u.refresh("s1", "r1", "r2", 1);
        assert!(d.outcome.is_ok());
        apply_all(&mut u, &d.events);
        let d = u.refresh("s1", "r1", "r3", 2);
        assert!(d.outcome.is_err());
        apply_all(&mut u, &d.events);
        assert!(!u.session_active("s1"));
        assert!(u.refresh("s1", "r2", "r4", 3).outcome.is_err());
    }

    #[test]
    fn unconfirmed_right_password_is_not_a_failure() {
        let mut u = registered(false);
        let LoginAdmission::Admitted(e) = u.admit_login("a", 0) else {
            panic!()
        };
        u.apply(&e);
        let d = u.finish_login("a", true, "s", "r", 0);
        assert_eq!(d.outcome, Err(DomainError::NotConfirmed));
        apply_all(&mut u, &d.events);
        assert_eq!(u.failures, 0);
        assert!(u.in_flight.is_empty());
    }
}
