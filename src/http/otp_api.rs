//! The OTP auth API (`spec/otp-auth-api.md`): `{msg, …}` bodies over the
//! identity core.
//!
//! The document's design returns the secret code to the caller (`otpCode`,
//! `token`); ours never does. The response keeps its shape, but those fields
//! carry an opaque challenge id, the code goes only to the mailbox, and
//! verification checks only the code the user types.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::identity::{CodePurpose, Role};
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::app::{ServiceError, TokenUse};

fn msg(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn fail(e: impl Into<ApiError>) -> HttpResponse {
    let e: ApiError = e.into();
    let status = e.status_logged();
    msg(status, json!({"msg": e.to_string()}))
}

fn respond(r: Result<HttpResponse, ApiError>) -> HttpResponse {
    r.unwrap_or_else(fail)
}

/// What the document's `info` (the mail transport's report) holds; ours
/// reports the mail we queued.
fn mail_info(state: &AppState, to: &str) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    json!({
        "accepted": [to],
        "rejected": [],
        "envelopeTime": 0,
        "messageTime": 0,
        "messageSize": 0,
        "response": "250 queued",
        "envelope": {"from": state.identity.config().mail_from, "to": [to]},
        "messageId": format!("<{}.{now}@tessera>", uuid::Uuid::new_v4().simple()),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignUp {
    #[serde(default)]
    pub full_name: Option<String>,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailOnly {
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetPassword {
    pub input_otp_code: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyOtp {
    /// The user id `reqOtpCode` returned (checked against the token's user).
    #[serde(default)]
    pub user_id: Option<Value>,
    /// The challenge id `reqOtpCode` returned in `otpCode`.
    pub otp_code_from_server: String,
    /// The code from the mail.
    pub otp_code_from_user: String,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[utoipa::path(post, path = "/user/signup", request_body = SignUp, tag = "otp-api",
    responses((status = 201, description = "Sign up completed"), (status = 409, description = "email taken")))]
pub async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SignUp>,
) -> HttpResponse {
    respond(
        async {
            state.auth_limits.check(&req, &body.email)?;
            let user = state
                .identity
                .register(&body.email, &body.email, &body.password, Role::User, true)
                .await?;
            Ok(msg(
                StatusCode::CREATED,
                json!({
                    "msg": "Sign up completed",
                    "payload": {"user_id": user.user_id, "email": user.email.as_str()},
                }),
            ))
        }
        .await,
    )
}

#[utoipa::path(post, path = "/user/login", request_body = Login, tag = "otp-api",
    responses((status = 200, description = "Signed in"), (status = 401, description = "wrong email or password")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> HttpResponse {
    respond(
        async {
            state.auth_limits.check(&req, &body.email)?;
            let o = state.identity.login(&body.email, &body.password).await?;
            Ok(msg(
                StatusCode::OK,
                json!({"msg": "Signed in", "access_token": o.access_token}),
            ))
        }
        .await,
    )
}

/// Mails a reset code. `token` is an opaque challenge to send back with it;
/// unknown emails get a token of the same form that never verifies.
#[utoipa::path(post, path = "/user/reqResetPassword", request_body = EmailOnly, tag = "otp-api",
    responses((status = 200, description = "Send OTP code complete")))]
pub async fn req_reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<EmailOnly>,
) -> HttpResponse {
    respond(
        async {
            state.auth_limits.check(&req, &body.email)?;
            let email = tessera_domain::identity::Email::parse(&body.email)?;
            let token = match state.identity.find(email.as_str()).await? {
                Some(row) => state
                    .identity
                    .send_code(email.as_str(), CodePurpose::Reset)
                    .await?
                    .map(|challenge| format!("{}.{challenge}", row.user_id)),
                None => None,
            }
            .unwrap_or_else(|| {
                format!(
                    "{}.{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                )
            });
            Ok(msg(
                StatusCode::OK,
                json!({
                    "msg": "Send OTP code complete",
                    "token": token,
                    "info": mail_info(&state, email.as_str()),
                }),
            ))
        }
        .await,
    )
}

#[utoipa::path(post, path = "/user/resetPassword", request_body = ResetPassword, tag = "otp-api",
    responses((status = 200, description = "Reset password complete"), (status = 400, description = "wrong or expired code")))]
pub async fn reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ResetPassword>,
) -> HttpResponse {
    respond(
        async {
            let token = header(&req, "token")
                .ok_or_else(|| ApiError::BadRequest("missing token header".into()))?;
            let (user_id, challenge) = token
                .split_once('.')
                .ok_or_else(|| ApiError::BadRequest("invalid token".into()))?;
            state.auth_limits.check(&req, user_id)?;
            state
                .identity
                .reset_password_for(
                    user_id,
                    Some(challenge),
                    &body.input_otp_code,
                    &body.new_password,
                )
                .await?;
            Ok(msg(
                StatusCode::OK,
                json!({"msg": "Reset password complete"}),
            ))
        }
        .await,
    )
}

async fn principal(
    state: &AppState,
    req: &HttpRequest,
) -> Result<crate::app::identity::Principal, ApiError> {
    let token = header(req, "access_token")
        .or_else(|| super::auth::bearer(req))
        .ok_or_else(|| ApiError::Unauthorized("missing access_token header".into()))?;
    Ok(state.identity.authenticate(token, TokenUse::Access).await?)
}

/// Mails a one-time login code (10 minutes, single use).
#[utoipa::path(get, path = "/auth/reqOtpCode", tag = "otp-api",
    responses((status = 200, description = "Send OTP code complete; otpCode is an opaque challenge id")))]
pub async fn req_otp_code(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    respond(
        async {
            let p = principal(&state, &req).await?;
            state.auth_limits.check(&req, &p.user_id)?;
            let challenge = state
                .identity
                .send_code(&p.username, CodePurpose::Otp)
                .await?
                .ok_or_else(|| ApiError::NotFound("user not found".into()))?;
            Ok(msg(
                StatusCode::OK,
                json!({
                    "msg": "Send OTP code complete",
                    "userId": p.user_id,
                    "otpCode": challenge,
                    "info": mail_info(&state, &p.email),
                }),
            ))
        }
        .await,
    )
}

#[utoipa::path(post, path = "/auth/verifyOtpCode", request_body = VerifyOtp, tag = "otp-api",
    responses((status = 200, description = "OTP Code Verified"), (status = 400, description = "verified: false")))]
pub async fn verify_otp_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<VerifyOtp>,
) -> HttpResponse {
    let p = match principal(&state, &req).await {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if let Err(e) = state.auth_limits.check(&req, &p.user_id) {
        return fail(e);
    }
    let claimed = body.user_id.as_ref().map(|v| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    });
    if claimed.is_some_and(|c| c != p.user_id) {
        return msg(
            StatusCode::BAD_REQUEST,
            json!({"msg": "userId does not match the token", "verified": false}),
        );
    }
    match state
        .identity
        .verify_otp(
            &p.user_id,
            &body.otp_code_from_server,
            &body.otp_code_from_user,
        )
        .await
    {
        Ok(()) => msg(
            StatusCode::OK,
            json!({"msg": "OTP Code Verified", "verified": true}),
        ),
        Err(ServiceError::Domain(e)) => {
            let status = actix_web::ResponseError::status_code(&ApiError::from(e.clone()));
            msg(status, json!({"msg": e.to_string(), "verified": false}))
        }
        Err(e) => fail(e),
    }
}

fn json_config(limit: usize) -> web::JsonConfig {
    super::error::json_config_with(limit, fail)
}

pub fn routes(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.service(
        web::resource("/user/signup")
            .app_data(json_config(limit))
            .route(web::post().to(signup)),
    )
    .service(
        web::resource("/user/login")
            .app_data(json_config(limit))
            .route(web::post().to(login)),
    )
    .service(
        web::resource("/user/reqResetPassword")
            .app_data(json_config(limit))
            .route(web::post().to(req_reset_password)),
    )
    .service(
        web::resource("/user/resetPassword")
            .app_data(json_config(limit))
            .route(web::post().to(reset_password)),
    )
    .service(
        web::resource("/auth/reqOtpCode")
            .route(web::get().to(req_otp_code))
            .route(web::post().to(req_otp_code)),
    )
    .service(
        web::resource("/auth/verifyOtpCode")
            .app_data(json_config(limit))
            .route(web::get().to(verify_otp_code))
            .route(web::post().to(verify_otp_code)),
    );
}
