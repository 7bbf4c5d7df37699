//! The roles auth API (`spec/roles-auth-api.md`): users and merchants register
//! themselves; admins are created by an operator (`tessera admin create-user
//! --role admin`). The role is in the token. Errors use the document's body
//! `{timestamp, code, status, message, path}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tessera_domain::identity::Role;
use utoipa::ToSchema;

use super::{ApiError, AppState};

fn fail_at(path: &str, e: impl Into<ApiError>) -> HttpResponse {
    let e: ApiError = e.into();
    let status = e.status_logged();
    HttpResponse::build(status).json(json!({
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "code": status.as_u16(),
        "status": status.canonical_reason().unwrap_or("Error"),
        "message": format!("Invalid Request: {e}"),
        "path": path,
    }))
}

/// Registration body. Unknown fields (a `role`, say) are ignored: registering
/// can never choose a role.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Register {
    #[serde(default)]
    pub name: Option<String>,
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(rename = "confirm-password")]
    pub confirm_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub password: String,
}

async fn register(
    state: &AppState,
    req: &HttpRequest,
    body: &Register,
    role: Role,
) -> Result<HttpResponse, ApiError> {
    state.auth_limits.check(req, &body.username)?;
    if body.password != body.confirm_password {
        return Err(ApiError::BadRequest(
            "password and confirm-password differ".into(),
        ));
    }
    state
        .identity
        .register(&body.username, &body.email, &body.password, role, true)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"signup": "true"})))
}

#[utoipa::path(post, path = "/user/register", request_body = Register, tag = "roles-api",
    responses((status = 200, description = "{\"signup\": \"true\"}"), (status = 400), (status = 409)))]
pub async fn user_register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Register>,
) -> HttpResponse {
    register(&state, &req, &body, Role::User)
        .await
        .unwrap_or_else(|e| fail_at("/user/register", e))
}

#[utoipa::path(post, path = "/merchant/register", request_body = Register, tag = "roles-api",
    responses((status = 200, description = "{\"signup\": \"true\"}"), (status = 400), (status = 409)))]
pub async fn merchant_register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Register>,
) -> HttpResponse {
    register(&state, &req, &body, Role::Merchant)
        .await
        .unwrap_or_else(|e| fail_at("/merchant/register", e))
}

/// Log in by username or email; the token carries the role.
#[utoipa::path(post, path = "/login", request_body = Login, tag = "roles-api",
    responses((status = 200, description = "{\"token\": …}"), (status = 401)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> HttpResponse {
    let result = async {
        let name = body
            .username
            .as_deref()
            .or(body.email.as_deref())
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("username or email is required".into()))?;
        state.auth_limits.check(&req, name)?;
        let o = state.identity.login(name, &body.password).await?;
        Ok::<_, ApiError>(HttpResponse::Ok().json(json!({"token": o.access_token})))
    }
    .await;
    result.unwrap_or_else(|e| fail_at("/login", e))
}

#[utoipa::path(post, path = "/logout", tag = "roles-api", security(("bearer" = [])),
    responses((status = 200, description = "{\"logout\": \"true\"}"), (status = 401)))]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let result = async {
        let p = super::auth::access(&req, &state.identity).await?;
        state.identity.logout(&p).await?;
        Ok::<_, ApiError>(HttpResponse::Ok().json(json!({"logout": "true"})))
    }
    .await;
    result.unwrap_or_else(|e| fail_at("/logout", e))
}

fn json_config(limit: usize, path: &'static str) -> web::JsonConfig {
    super::error::json_config_with(limit, move |e| fail_at(path, e))
}

pub fn routes(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.service(
        web::resource("/user/register")
            .app_data(json_config(limit, "/user/register"))
            .route(web::post().to(user_register)),
    )
    .service(
        web::resource("/merchant/register")
            .app_data(json_config(limit, "/merchant/register"))
            .route(web::post().to(merchant_register)),
    )
    .service(
        web::resource("/login")
            .app_data(json_config(limit, "/login"))
            .route(web::post().to(login)),
    )
    .service(web::resource("/logout").route(web::post().to(logout)));
}
