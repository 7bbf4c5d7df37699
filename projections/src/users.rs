//! `users` (inline): user id by username or email, role, storage identity.
//! Its unique indexes are what make concurrent sign-ups of one username or
//! email yield exactly one winner.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::identity::UserEvent;
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct Users;

/// The constraint names a duplicate sign-up trips over.
pub const USERNAME_TAKEN: &str = "users_username_key";
pub const EMAIL_TAKEN: &str = "users_email_key";

#[async_trait]
impl Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !event.is::<UserEvent>() {
            return Ok(());
        }
        let e = event.decode::<UserEvent>()?;
        match e {
            UserEvent::UserRegistered {
                user_id,
                username,
                email,
                role,
                identity_id,
                confirmed,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO users (user_id, username, username_key, email, email_key, role, identity_id, confirmed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(&user_id)
                .bind(username.as_str())
                .bind(username.key())
                .bind(email.as_str())
                .bind(email.key())
                .bind(role.as_str())
                .bind(&identity_id)
                .bind(i64::from(confirmed))
                .execute(conn)
                .await?;
            }
            UserEvent::UserConfirmed { .. } => {
                sqlx::query("UPDATE users SET confirmed = 1 WHERE user_id = $1")
                    .bind(&event.stream_id)
                    .execute(conn)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A user as the look-up sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub role: String,
    pub identity_id: String,
    pub confirmed: bool,
}

/// Finds a user by username or email (case-insensitive).
pub async fn find(conn: &mut AnyConnection, login: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let key = login.trim().to_lowercase();
    let row = sqlx::query(
        "SELECT user_id, username, email, role, identity_id, confirmed FROM users \
         WHERE username_key = $1 OR email_key = $1 ORDER BY CASE WHEN username_key = $1 THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(UserRow {
            user_id: r.try_get(0)?,
            username: r.try_get(1)?,
            email: r.try_get(2)?,
            role: r.try_get(3)?,
            identity_id: r.try_get(4)?,
            confirmed: r.try_get::<i64, _>(5)? != 0,
        })
    })
    .transpose()
}

/// A user's email address by user id.
pub async fn email_of(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
}
