//! The Users API (`spec/users-api.md`): its own envelope
//! `{status, message, data, refrence, error}` (the `refrence` spelling is the
//! documented one) over the identity core. Tokens travel in a bare
//! `Authorization` header.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tessera_domain::identity::{CodePurpose, Role};
use utoipa::ToSchema;

use super::auth::bearer;
use super::{ApiError, AppState};
use crate::app::identity::TokenUse;

#[derive(Debug, Serialize, ToSchema)]
pub struct UsersEnvelope {
    pub status: u16,
    pub message: String,
    pub data: Value,
    pub refrence: Value,
    pub error: bool,
}

fn reply(status: StatusCode, message: &str, data: Value) -> HttpResponse {
    HttpResponse::build(status).json(UsersEnvelope {
        status: status.as_u16(),
        message: message.to_owned(),
        data,
        refrence: Value::Null,
        error: !status.is_success(),
    })
}

/// This dialect's errors: the status of the shared mapping, this envelope.
fn fail(e: impl Into<ApiError>) -> HttpResponse {
    let e: ApiError = e.into();
    let status = e.status_logged();
    reply(status, &e.to_string(), Value::Null)
}

/// Turns the outcome of a handler into a response in this envelope.
fn respond(r: Result<HttpResponse, ApiError>) -> HttpResponse {
    r.unwrap_or_else(fail)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// An email address (reset links are mailed to it).
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    pub username: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPassword {
    pub password: String,
}

/// Create a user (the username is their email address).
#[utoipa::path(post, path = "/users", request_body = Credentials, tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 409, description = "username already exist")))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> HttpResponse {
    respond(
        async {
            state.auth_limits.check(&req, &body.username)?;
            state
                .identity
                .register(
                    &body.username,
                    &body.username,
                    &body.password,
                    Role::User,
                    true,
                )
                .await
                .map_err(|e| match e {
                    crate::app::ServiceError::Domain(
                        tessera_domain::DomainError::UsernameExists(_),
                    ) => ApiError::Conflict("username already exist".into()),
                    other => other.into(),
                })?;
            Ok(reply(
                StatusCode::OK,
                "successfully created",
                json!({"username": body.username.trim()}),
            ))
        }
        .await,
    )
}

#[utoipa::path(post, path = "/users/login", request_body = Credentials, tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 401, description = "username and password not match")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> HttpResponse {
    respond(
        async {
            state.auth_limits.check(&req, &body.username)?;
            let o = state
                .identity
                .login(&body.username, &body.password)
                .await
                .map_err(|e| match e {
                    crate::app::ServiceError::Domain(
                        tessera_domain::DomainError::NotAuthorized(_),
                    ) => ApiError::Unauthorized("username and password not match".into()),
                    other => other.into(),
                })?;
            Ok(reply(
                StatusCode::OK,
                "successfully login",
                json!({"access_token": o.access_token, "refresh_token": o.refresh_token}),
            ))
        }
        .await,
    )
}

#[utoipa::path(get, path = "/users/verify-token", tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 401, description = "please provided a valid access_token!")))]
pub async fn verify_token(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let ok = match bearer(&req) {
        Some(t) => state
            .identity
            .authenticate(t, TokenUse::Access)
            .await
            .is_ok(),
        None => false,
    };
    if ok {
        reply(StatusCode::OK, "token verified", Value::Null)
    } else {
        reply(
            StatusCode::UNAUTHORIZED,
            "please provided a valid access_token!",
            Value::Null,
        )
    }
}

/// Rotates the refresh token in `Authorization`; returns a new access token
/// and (an addition) the new refresh token.
#[utoipa::path(post, path = "/users/refresh-token", tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 401, description = "please provided a valid refresh_token!")))]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(token) = bearer(&req) else {
        return reply(
            StatusCode::UNAUTHORIZED,
            "please provided a valid refresh_token!",
            Value::Null,
        );
    };
    match state.identity.refresh(None, token).await {
        Ok(o) => reply(
            StatusCode::OK,
            "successfully refresh access_token",
            json!({"access_token": o.access_token, "refresh_token": o.refresh_token}),
        ),
        Err(crate::app::ServiceError::Domain(tessera_domain::DomainError::NotAuthorized(_))) => {
            reply(
                StatusCode::UNAUTHORIZED,
                "please provided a valid refresh_token!",
                Value::Null,
            )
        }
        Err(e) => fail(e),
    }
}

/// Mails a reset link if the account exists; the same answer either way.
#[utoipa::path(post, path = "/users/reset-password", request_body = ResetRequest, tag = "users-api",
    responses((status = 200, body = UsersEnvelope)))]
pub async fn reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ResetRequest>,
) -> HttpResponse {
    respond(async {
        state.auth_limits.check(&req, &body.username)?;
        state.identity.send_code(&body.username, CodePurpose::Reset).await?;
        Ok(reply(
            StatusCode::OK,
            "If the account is already registered, we have sent a password reset link to your email so you can change the new password,",
            Value::Null,
        ))
    }
    .await)
}

/// Checks a reset token from the mailed link without using it up.
#[utoipa::path(get, path = "/users/reset-password/verify-token", tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 400, description = "please provided a valid reset_password_token!")))]
pub async fn reset_verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    // The mailed link carries the token as ?token=…; API clients send the header.
    let token = bearer(&req)
        .map(str::to_owned)
        .or_else(|| query.get("token").cloned());
    let ok = match token {
        Some(t) => state.identity.check_reset_token(&t).await.is_ok(),
        None => false,
    };
    if ok {
        reply(StatusCode::OK, "token verified", Value::Null)
    } else {
        reply(
            StatusCode::BAD_REQUEST,
            "please provided a valid reset_password_token!",
            Value::Null,
        )
    }
}

#[utoipa::path(put, path = "/users/reset-password/update-password", request_body = NewPassword, tag = "users-api",
    responses((status = 200, body = UsersEnvelope), (status = 400, description = "please provided a valid reset_password_token!")))]
pub async fn update_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewPassword>,
) -> HttpResponse {
    let Some(token) = bearer(&req) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "please provided a valid reset_password_token!",
            Value::Null,
        );
    };
    match state.identity.reset_with_token(token, &body.password).await {
        Ok(()) => reply(StatusCode::OK, "password successfully updated", Value::Null),
        Err(crate::app::ServiceError::Domain(
            tessera_domain::DomainError::CodeMismatch
            | tessera_domain::DomainError::ExpiredCode
            | tessera_domain::DomainError::NotFound(_),
        )) => reply(
            StatusCode::BAD_REQUEST,
            "please provided a valid reset_password_token!",
            Value::Null,
        ),
        Err(e) => fail(e),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.service(
        web::scope("/users")
            .app_data(super::error::json_config_with(limit, fail))
            .route("", web::post().to(create))
            .route("/login", web::post().to(login))
            .route("/verify-token", web::get().to(verify_token))
            .route("/refresh-token", web::post().to(refresh))
            .route("/reset-password", web::post().to(reset_password))
            .route("/reset-password/verify-token", web::get().to(reset_verify))
            .route(
                "/reset-password/update-password",
                web::put().to(update_password),
            ),
    );
}
