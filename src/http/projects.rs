//! The project API of the platform document (`projects/...`). The caller is
//! the `id_token` of the body (as documented) or an `Authorization: Bearer`
//! access token; every look-up is scoped to the caller, so another user's
//! project is simply not found.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{ApiError, AppState, Envelope};
use crate::identity::{Principal, TokenUse};

/// The caller: the body's ID token if present, else the bearer access token.
async fn caller(
    state: &AppState,
    req: &HttpRequest,
    id_token: Option<&str>,
) -> Result<Principal, ApiError> {
    match id_token.filter(|t| !t.is_empty()) {
        Some(t) => Ok(state.identity.authenticate(t, TokenUse::Id).await?),
        None => super::auth::access(req, &state.identity).await,
    }
}

fn ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(Envelope::ok(data))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenOnly {
    #[serde(default)]
    pub id_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Create {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_name: String,
    #[serde(default)]
    pub project_info: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ByName {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Update {
    #[serde(default)]
    pub id_token: Option<String>,
    pub cur_project_name: String,
    #[serde(default)]
    pub new_project_name: Option<String>,
    #[serde(default)]
    pub new_description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Delete {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    #[serde(default)]
    pub project_name: Option<String>,
}

/// Create a project; its name is unique for the user.
#[utoipa::path(post, path = "/projects/create", request_body = Create, tag = "projects",
    responses((status = 200, description = "{project_id, s3_prefix}"), (status = 409, description = "name taken"), (status = 400), (status = 429, description = "project limit")))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Create>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let p = state
        .projects
        .create(
            &who,
            &body.project_name,
            body.project_info.as_deref().unwrap_or_default(),
            false,
        )
        .await?;
    Ok(ok(
        json!({"project_id": p.project_id, "s3_prefix": p.s3_prefix}),
    ))
}

/// The caller's projects, in DynamoDB's attribute shape as documented.
#[utoipa::path(post, path = "/projects/list", request_body = TokenOnly, tag = "projects",
    responses((status = 200, description = "{items: [{project_name: {S}, project_id: {S}, s3_prefix: {S}}]}")))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenOnly>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let items: Vec<Value> = state
        .projects
        .list(&who)
        .await?
        .into_iter()
        .map(|p| json!({"project_name": {"S": p.name}, "project_id": {"S": p.project_id}, "s3_prefix": {"S": p.s3_prefix}}))
        .collect();
    Ok(ok(json!({"items": items})))
}

/// The caller's projects with running tasks and data summaries.
#[utoipa::path(post, path = "/projects/list_info", request_body = TokenOnly, tag = "projects",
    responses((status = 200, description = "[{project_name, project_id, s3_prefix, ls_task, groups}]")))]
pub async fn list_info(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenOnly>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let items: Vec<Value> = state
        .projects
        .list(&who)
        .await?
        .into_iter()
        .map(|p| json!({"project_name": p.name, "project_id": p.project_id, "s3_prefix": p.s3_prefix, "ls_task": [], "groups": {}}))
        .collect();
    Ok(ok(Value::Array(items)))
}

/// One project by name.
#[utoipa::path(post, path = "/projects/info", request_body = ByName, tag = "projects",
    responses((status = 200, description = "{identity_id, project_name, project_id, times_generated, ls_task, groups}"), (status = 404)))]
pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ByName>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let p = state.projects.by_name(&who, &body.project_name).await?;
    Ok(ok(json!({
        "identity_id": p.identity_id,
        "project_name": p.name,
        "project_id": p.project_id,
        "times_generated": 0,
        "ls_task": [],
        "groups": null,
    })))
}

/// Rename and/or re-describe; the project id stays.
#[utoipa::path(post, path = "/projects/update_info", request_body = Update, tag = "projects",
    responses((status = 200, description = "{project_id, s3_prefix, is_sample, gen_status, project_name, description}"), (status = 404), (status = 409)))]
pub async fn update_info(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Update>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let p = state
        .projects
        .update(
            &who,
            &body.cur_project_name,
            body.new_project_name.as_deref(),
            body.new_description.as_deref(),
        )
        .await?;
    Ok(ok(json!({
        "project_id": p.project_id,
        "s3_prefix": p.s3_prefix,
        "is_sample": p.is_sample,
        "gen_status": "FINISH",
        "project_name": p.name.as_str(),
        "description": p.description,
    })))
}

/// Delete a project.
#[utoipa::path(post, path = "/projects/delete", request_body = Delete, tag = "projects",
    responses((status = 200, description = "deleted"), (status = 404), (status = 409, description = "tasks running")))]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Delete>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    state.projects.delete(&who, &body.project_id).await?;
    Ok(ok(json!({})))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/create", web::post().to(create))
        .route("/projects/list", web::post().to(list))
        .route("/projects/list_info", web::post().to(list_info))
        .route("/projects/info", web::post().to(info))
        .route("/projects/update_info", web::post().to(update_info))
        .route("/projects/delete", web::post().to(delete));
}
