//! The platform's auth API (`spec/daita-auth-api.md`, and the `/auth/...` paths
//! of `spec/daita-platform-api.md`): a thin dialect over the identity core.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tessera_domain::identity::{CodePurpose, Role};
use utoipa::ToSchema;

use super::auth::access;
use super::{ApiError, AppState, Envelope};
use crate::app::identity::LoginOutcome;

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUp {
    pub email: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Confirm {
    pub username: String,
    pub confirm_code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UsernameOnly {
    pub username: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmForgot {
    pub username: String,
    pub password: String,
    pub confirm_code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Refresh {
    #[serde(default)]
    pub username: Option<String>,
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReferenceEmail {
    pub username: String,
    pub destination_email: String,
}

/// Login data. `resfresh_token` is the documented spelling clients read;
/// `refresh_token` is the corrected name beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub access_key: String,
    /// Seconds, as a string (as documented).
    pub expires_in: String,
    pub id_token: String,
    pub identity_id: String,
    pub secret_key: String,
    pub session_key: String,
    pub token: String,
    pub refresh_token: String,
    pub resfresh_token: String,
}

impl From<LoginOutcome> for Tokens {
    fn from(o: LoginOutcome) -> Self {
        Tokens {
            access_key: o.credentials.access_key,
            expires_in: o.expires_in.to_string(),
            id_token: o.id_token,
            identity_id: o.principal.identity_id,
            secret_key: o.credentials.secret_key,
            session_key: o.credentials.session_key,
            token: o.access_token,
            refresh_token: o.refresh_token.clone(),
            resfresh_token: o.refresh_token,
        }
    }
}

fn ok_message(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(Envelope {
        data: Some(json!({})),
        error: false,
        success: true,
        message: Some(message.to_owned()),
    })
}

fn tokens_response(outcome: LoginOutcome, message: &str) -> HttpResponse {
    let bearer = format!("Bearer {}", outcome.access_token);
    HttpResponse::Ok()
        .insert_header(("x-amzn-remapped-authorization", bearer))
        .json(Envelope {
            data: Some(Tokens::from(outcome)),
            error: false,
            success: true,
            message: Some(message.to_owned()),
        })
}

/// Sign up: registers the user and mails a confirmation code (valid 24 h).
#[utoipa::path(post, path = "/user_signup", request_body = SignUp, tag = "auth",
    responses((status = 200, description = "registered; code mailed"), (status = 409, description = "UsernameExistsException"), (status = 400, description = "invalid input")))]
pub async fn user_signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SignUp>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    state
        .identity
        .register(
            &body.username,
            &body.email,
            &body.password,
            Role::User,
            false,
        )
        .await?;
    Ok(ok_message(
        "Sign up successfully, please check your email for the confirmation code.",
    ))
}

/// Confirm the email with the mailed code.
#[utoipa::path(post, path = "/auth_confirm", request_body = Confirm, tag = "auth",
    responses((status = 200, description = "confirmed"), (status = 400, description = "CodeMismatchException / ExpiredCodeException")))]
pub async fn auth_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Confirm>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    state
        .identity
        .confirm(&body.username, &body.confirm_code)
        .await?;
    Ok(ok_message("Email confirmed successfully."))
}

/// Mail a new confirmation code. The answer is the same for unknown users.
#[utoipa::path(post, path = "/resend_confirmcode", request_body = UsernameOnly, tag = "auth",
    responses((status = 200, description = "a code was mailed if the user exists and is unconfirmed")))]
pub async fn resend_confirmcode(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<UsernameOnly>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    state
        .identity
        .send_code(&body.username, CodePurpose::Confirm)
        .await?;
    Ok(ok_message(
        "If the account exists and is not confirmed, a new code has been sent.",
    ))
}

/// Log in with username (or email) and password.
#[utoipa::path(post, path = "/user_login", request_body = Login, tag = "auth",
    responses((status = 200, description = "tokens and storage credentials", body = Tokens),
        (status = 401, description = "NotAuthorizedException"), (status = 403, description = "UserNotConfirmedException"),
        (status = 429, description = "LimitExceededException (lockout) / TooManyRequestsException")))]
pub async fn user_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    let outcome = state.identity.login(&body.username, &body.password).await?;
    Ok(tokens_response(outcome, "Login successfully"))
}

/// Rotate the refresh token; returns new tokens (and the new refresh token).
#[utoipa::path(post, path = "/refresh_token", request_body = Refresh, tag = "auth",
    responses((status = 200, description = "new tokens", body = Tokens), (status = 401, description = "invalid, revoked or reused refresh token")))]
pub async fn refresh_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Refresh>,
) -> Result<HttpResponse, ApiError> {
    state
        .auth_limits
        .check(&req, body.username.as_deref().unwrap_or_default())?;
    let outcome = state
        .identity
        .refresh(body.username.as_deref(), &body.refresh_token)
        .await?;
    Ok(tokens_response(outcome, "Refresh token successfully"))
}

/// Global sign-out: refresh, access and ID tokens of every session stop working.
#[utoipa::path(post, path = "/user_logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "signed out"), (status = 401, description = "invalid token")))]
pub async fn user_logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let principal = access(&req, &state.identity).await?;
    state.identity.logout(&principal).await?;
    Ok(ok_message("Logout successfully"))
}

/// Mail a password-reset code (valid 1 h). Same answer for unknown users.
#[utoipa::path(post, path = "/forgot_password", request_body = UsernameOnly, tag = "auth",
    responses((status = 200, description = "a code was mailed if the user exists")))]
pub async fn forgot_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<UsernameOnly>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    state
        .identity
        .send_code(&body.username, CodePurpose::Reset)
        .await?;
    Ok(ok_message(
        "If the account exists, a password reset code has been sent.",
    ))
}

/// Set a new password with the reset code.
#[utoipa::path(post, path = "/confirm_code_forgot_password", request_body = ConfirmForgot, tag = "auth",
    responses((status = 200, description = "password changed; all sessions ended"), (status = 400, description = "bad code or password")))]
pub async fn confirm_code_forgot_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ConfirmForgot>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, &body.username)?;
    state
        .identity
        .reset_password(&body.username, None, &body.confirm_code, &body.password)
        .await?;
    Ok(ok_message("Password changed successfully."))
}

/// Checks the access token.
#[utoipa::path(post, path = "/test", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "token valid"), (status = 401, description = "invalid token")))]
pub async fn test(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    access(&req, &state.identity).await?;
    Ok(ok_message("Token is valid"))
}

/// The invitation mail template.
#[utoipa::path(get, path = "/template-invite-mail", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the template")))]
pub async fn template_invite_mail(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access(&req, &state.identity).await?;
    Ok(HttpResponse::Ok().json(Envelope {
        data: Some(json!({"template_mail": state.identity.config().invite_template})),
        error: false,
        success: true,
        message: Some("Get template invite mail successfully".into()),
    }))
}

/// Send the invitation mail (at most 20 per user per day). The caller must be
/// the `username` of the body.
#[utoipa::path(post, path = "/send-mail/reference-email", request_body = ReferenceEmail, tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "sent"), (status = 429, description = "daily cap reached")))]
pub async fn reference_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ReferenceEmail>,
) -> Result<HttpResponse, ApiError> {
    let principal = access(&req, &state.identity).await?;
    if !principal
        .username
        .eq_ignore_ascii_case(body.username.trim())
    {
        return Err(ApiError::Forbidden(
            "username does not match the token".into(),
        ));
    }
    state
        .identity
        .send_invite(&principal, &body.destination_email)
        .await?;
    Ok(ok_message("Send email successfully"))
}

/// A Google ID token, under any of the names Google's libraries use.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GoogleLogin {
    #[serde(alias = "id_token", alias = "credential")]
    pub token: String,
}

/// Sign in with a Google ID token; the response is the login response.
#[utoipa::path(post, path = "/login_google", request_body = GoogleLogin, tag = "auth",
    responses((status = 200, description = "tokens and storage credentials", body = Tokens),
        (status = 400, description = "Google sign-in is not enabled on this server"),
        (status = 401, description = "invalid Google ID token")))]
pub async fn login_google(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<GoogleLogin>,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(&req, "")?;
    let outcome = state.identity.login_google(&body.token).await?;
    Ok(tokens_response(outcome, "Login successfully"))
}

/// Registers the routes at the staging paths and under `/auth`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["", "/auth"] {
        let p = |path: &str| format!("{prefix}{path}");
        cfg.route(&p("/user_signup"), web::post().to(user_signup))
            .route(&p("/auth_confirm"), web::post().to(auth_confirm))
            .route(
                &p("/resend_confirmcode"),
                web::post().to(resend_confirmcode),
            )
            .route(&p("/user_login"), web::post().to(user_login))
            .route(&p("/refresh_token"), web::post().to(refresh_token))
            .route(&p("/user_logout"), web::post().to(user_logout))
            .route(&p("/forgot_password"), web::post().to(forgot_password))
            .route(
                &p("/confirm_code_forgot_password"),
                web::post().to(confirm_code_forgot_password),
            )
            .route(&p("/test"), web::post().to(test))
            .route(
                &p("/template-invite-mail"),
                web::get().to(template_invite_mail),
            )
            .route(
                &p("/send-mail/reference-email"),
                web::post().to(reference_email),
            )
            .route(&p("/login_google"), web::post().to(login_google));
    }
}
