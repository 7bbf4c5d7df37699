//! The project API of the platform document (`projects/...`). The caller is
//! the `id_token` of the body (as documented) or an `Authorization: Bearer`
//! access token; every look-up is scoped to the caller, so another user's
//! project is simply not found.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use base64::Engine;
use tessera_domain::project::data::{ClassType, DataItem, DataKind};
use tessera_domain::DomainError;
use tessera_projections::data_items::GroupRow;

use super::{ApiError, AppState, Envelope};
use crate::app::identity::{Principal, TokenUse};
use crate::app::projects::Cursor;

/// The caller: the body's ID token if present, else the bearer access token.
pub(crate) async fn caller(
    state: &AppState,
    req: &HttpRequest,
    id_token: Option<&str>,
) -> Result<Principal, ApiError> {
    match id_token.filter(|t| !t.is_empty()) {
        Some(t) => Ok(state.identity.authenticate(t, TokenUse::Id).await?),
        None => super::auth::access(req, &state.identity).await,
    }
}

pub(crate) fn ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(Envelope::ok(data))
}

/// `{ORIGINAL: {count, size[, data_number]}, ...}` for the kinds that hold
/// data; `None` when none does. `data_number` is the TRAIN/VAL/TEST split, or
/// null when the data was never split.
fn groups_json(groups: Option<&Vec<GroupRow>>, with_split: bool) -> Option<Value> {
    let groups = groups.filter(|g| g.iter().any(|g| g.count > 0))?;
    let mut map = serde_json::Map::new();
    for g in groups.iter().filter(|g| g.count > 0) {
        let mut entry = serde_json::Map::new();
        entry.insert("count".into(), json!(g.count));
        entry.insert("size".into(), json!(g.size));
        if with_split {
            let split = if g.split.iter().any(|n| *n > 0) {
                json!(g.split)
            } else {
                Value::Null
            };
            entry.insert("data_number".into(), split);
        }
        map.insert(g.kind.clone(), Value::Object(entry));
    }
    Some(Value::Object(map))
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
    let projects = state.projects.list(&who).await?;
    let ids: Vec<&str> = projects.iter().map(|p| p.project_id.as_str()).collect();
    let groups = state.projects.groups(&ids).await?;
    let running = state.projects.running_tasks(&ids).await?;
    let items: Vec<Value> = projects
        .iter()
        .map(|p| {
            let g = groups_json(groups.get(&p.project_id), false);
            let ls_task: Vec<Value> = running
                .iter()
                .filter(|t| t.project_id == p.project_id)
                .map(|t| json!({"task_id": t.task_id, "project_id": t.project_id}))
                .collect();
            json!({"project_name": p.name, "project_id": p.project_id, "s3_prefix": p.s3_prefix, "ls_task": ls_task, "groups": g.unwrap_or_else(|| json!({}))})
        })
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
    let groups = state.projects.groups(&[p.project_id.as_str()]).await?;
    let running = state
        .projects
        .running_tasks(&[p.project_id.as_str()])
        .await?;
    let ls_task: Vec<&str> = running.iter().map(|t| t.task_id.as_str()).collect();
    Ok(ok(json!({
        "identity_id": p.identity_id,
        "project_name": p.name,
        "project_id": p.project_id,
        "times_generated": state.projects.times_generated(&p.project_id).await?,
        "ls_task": ls_task,
        "groups": groups_json(groups.get(&p.project_id), true),
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
    let running = state
        .projects
        .running_tasks(&[p.project_id.as_str()])
        .await?;
    Ok(ok(json!({
        "project_id": p.project_id,
        "s3_prefix": p.s3_prefix,
        "is_sample": p.is_sample,
        "gen_status": if running.is_empty() { "FINISH" } else { "GENERATING" },
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSample {
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub project_info: Option<String>,
}

/// Create the sample project, filled with sample images.
#[utoipa::path(post, path = "/projects/create_sample", request_body = CreateSample, tag = "projects",
    responses((status = 200, description = "{project_id, s3_prefix}"), (status = 409, description = "sample exists"), (status = 429, description = "project limit")))]
pub async fn create_sample(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateSample>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let p = state
        .projects
        .create_sample(&who, body.project_info.as_deref().unwrap_or_default())
        .await?;
    Ok(ok(
        json!({"project_id": p.project_id, "s3_prefix": p.s3_prefix}),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FileNames {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    pub ls_filename: Vec<String>,
}

/// Which of the files the project already holds, with their sizes.
#[utoipa::path(post, path = "/projects/upload_check", request_body = FileNames, tag = "projects",
    responses((status = 200, description = "[{filename: {S}, size: {N}}]"), (status = 404)))]
pub async fn upload_check(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<FileNames>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let found = state
        .projects
        .upload_check(&who, &body.project_id, &body.ls_filename)
        .await?;
    let data: Vec<Value> = found
        .into_iter()
        .map(|(name, size)| json!({"filename": {"S": name}, "size": {"N": size.to_string()}}))
        .collect();
    Ok(ok(Value::Array(data)))
}

/// Presigned PUT URLs, valid 15 minutes, one per file of the project.
#[utoipa::path(post, path = "/projects/upload_urls", request_body = FileNames, tag = "projects",
    responses((status = 200, description = "[{filename, s3_key, url}]"), (status = 400), (status = 404)))]
pub async fn upload_urls(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<FileNames>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let urls = state
        .projects
        .upload_urls(&who, &body.project_id, &body.ls_filename)
        .await?;
    let data: Vec<Value> = urls
        .into_iter()
        .map(|(filename, s3_key, url)| json!({"filename": filename, "s3_key": s3_key, "url": url, "method": "PUT", "expires_in": crate::app::projects::UPLOAD_URL_TTL.as_secs()}))
        .collect();
    Ok(ok(Value::Array(data)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ObjectInfo {
    pub s3_key: String,
    pub filename: String,
    pub hash: String,
    pub size: u64,
    #[serde(default)]
    pub is_ori: Option<bool>,
    #[serde(default)]
    pub gen_id: Option<String>,
    #[serde(default)]
    pub size_old: Option<u64>,
    /// TRAIN / VAL / TEST (generated items).
    #[serde(default)]
    pub classtype: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadUpdate {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub type_method: Option<String>,
    pub ls_object_info: Vec<ObjectInfo>,
}

/// Record files the client put into storage (at most 500 per request; each
/// must exist in the project's prefix with the stated size). `size_old` is
/// accepted for compatibility: a same-named file is replaced either way.
#[utoipa::path(post, path = "/projects/upload_update", request_body = UploadUpdate, tag = "projects",
    responses((status = 200, description = "{}"), (status = 400, description = "bad batch, missing object or size mismatch"), (status = 404), (status = 429, description = "original image limit")))]
pub async fn upload_update(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<UploadUpdate>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let body = body.into_inner();
    let generated = match body.type_method.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => match DataKind::parse(t)? {
            DataKind::Original => None,
            k => Some(k),
        },
        None => None,
    };
    let mut items = Vec::with_capacity(body.ls_object_info.len());
    for o in body.ls_object_info {
        let kind = if o.is_ori.unwrap_or(true) {
            DataKind::Original
        } else {
            generated.ok_or_else(|| {
                DomainError::Invalid(
                    "type_method must be PREPROCESS or AUGMENT for items with is_ori false".into(),
                )
            })?
        };
        let classtype = match o.classtype.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(ClassType::parse(c).ok_or_else(|| {
                DomainError::Invalid(format!("classtype must be TRAIN, VAL or TEST, not {c:?}"))
            })?),
            None => None,
        };
        items.push(DataItem {
            filename: o.filename,
            s3_key: o.s3_key,
            size: o.size,
            hash: o.hash,
            kind,
            gen_id: o.gen_id.unwrap_or_default(),
            classtype,
        });
    }
    state
        .projects
        .upload_update(&who, &body.project_id, items)
        .await?;
    Ok(ok(json!({})))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteInfo {
    pub filename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub type_method: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteImages {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    pub ls_object_info: Vec<DeleteInfo>,
}

/// Delete files of the project (all or none; storage is cleaned in the background).
#[utoipa::path(post, path = "/projects/delete_images", request_body = DeleteImages, tag = "projects",
    responses((status = 200, description = "{}"), (status = 400), (status = 404, description = "unknown project or file")))]
pub async fn delete_images(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<DeleteImages>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let body = body.into_inner();
    for o in &body.ls_object_info {
        if let Some(t) = o.type_method.as_deref().filter(|t| !t.is_empty()) {
            DataKind::parse(t)?;
        }
    }
    let names = body
        .ls_object_info
        .into_iter()
        .map(|o| o.filename)
        .collect();
    state
        .projects
        .delete_images(&who, &body.project_id, names)
        .await?;
    Ok(ok(json!({})))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ListData {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    #[serde(default)]
    pub type_method: Option<String>,
    #[serde(default)]
    pub num_limit: Option<usize>,
    /// `""` or null for the first page, then the `next_token` returned.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub next_token: Value,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn encode_cursor(c: Cursor) -> String {
    B64.encode(format!("v1:{}", c.0))
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let raw = B64.decode(s).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    text.strip_prefix("v1:")?.parse().ok().map(Cursor)
}

fn bad_token() -> ApiError {
    DomainError::Invalid("next_token is not one this API returned".into()).into()
}

/// A page of the project's files, newest first (`num_limit` ≤ 500).
#[utoipa::path(post, path = "/projects/list_data", request_body = ListData, tag = "projects",
    responses((status = 200, description = "{items: [{filename, s3_key, gen_id, classtype, size, type_method}], next_token}"), (status = 400, description = "bad num_limit or next_token"), (status = 404)))]
pub async fn list_data(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ListData>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let kind = body
        .type_method
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(DataKind::parse)
        .transpose()?;
    let after = match &body.next_token {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(token) => {
            if token.get("project_id").and_then(Value::as_str) != Some(body.project_id.as_str()) {
                return Err(bad_token());
            }
            match token.get("cursor") {
                Some(Value::String(c)) => Some(decode_cursor(c).ok_or_else(bad_token)?),
                Some(_) => return Err(bad_token()),
                None => {
                    let name = token
                        .get("filename")
                        .and_then(Value::as_str)
                        .ok_or_else(bad_token)?;
                    Some(
                        state
                            .projects
                            .cursor_of(&who, &body.project_id, name)
                            .await?,
                    )
                }
            }
        }
        _ => return Err(bad_token()),
    };
    let limit = body.num_limit.unwrap_or(state.projects.limits().max_batch);
    let page = state
        .projects
        .list_data(&who, &body.project_id, kind, limit, after)
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|i| {
            json!({
                "filename": i.filename,
                "s3_key": i.s3_key,
                "gen_id": i.gen_id,
                "classtype": i.classtype,
                "size": i.size,
                "type_method": i.kind,
            })
        })
        .collect();
    let next = page.next.map_or(Value::Null, |(filename, c)| {
        json!({"filename": filename, "project_id": body.project_id, "cursor": encode_cursor(c)})
    });
    Ok(ok(json!({"items": items, "next_token": next})))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/create", web::post().to(create))
        .route("/projects/create_sample", web::post().to(create_sample))
        .route("/projects/upload_check", web::post().to(upload_check))
        .route("/projects/upload_urls", web::post().to(upload_urls))
        .route("/projects/upload_update", web::post().to(upload_update))
        .route("/projects/delete_images", web::post().to(delete_images))
        .route("/projects/list_data", web::post().to(list_data))
        .route("/projects/list", web::post().to(list))
        .route("/projects/list_info", web::post().to(list_info))
        .route("/projects/info", web::post().to(info))
        .route("/projects/update_info", web::post().to(update_info))
        .route("/projects/delete", web::post().to(delete));
}
