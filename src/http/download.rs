//! Both API generations of compress-download over one `download` task:
//! `projects/download_create` + `projects/download_update`, and
//! `dataflow/create_compress_download_task` + `dataflow/get_compress_download_task`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::projects::{caller, ok};
use super::{ApiError, AppState};
use crate::app::downloads::DownloadView;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateDownload {
    #[serde(default)]
    pub id_token: Option<String>,
    /// ALL | ORIGINAL | PREPROCESS | AUGMENT.
    pub down_type: String,
    pub project_id: String,
    /// Accepted for compatibility; the project's own name is used.
    #[serde(default)]
    pub project_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DownloadTask {
    #[serde(default)]
    pub id_token: Option<String>,
    pub task_id: String,
}

async fn create(
    state: &AppState,
    req: &HttpRequest,
    body: CreateDownload,
) -> Result<HttpResponse, ApiError> {
    let who = caller(state, req, body.id_token.as_deref()).await?;
    let task_id = state
        .downloads
        .create(&who, &body.project_id, &body.down_type)
        .await?;
    Ok(ok(json!({ "task_id": task_id })))
}

async fn view(
    state: &AppState,
    req: &HttpRequest,
    body: &DownloadTask,
) -> Result<DownloadView, ApiError> {
    let who = caller(state, req, body.id_token.as_deref()).await?;
    Ok(state.downloads.view(&who, &body.task_id).await?)
}

/// Zip the project's images of one type (or all) in the background.
/// The same export asked again while the data has not changed gets the same
/// task (and zip).
#[utoipa::path(post, path = "/projects/download_create", request_body = CreateDownload, tag = "projects",
    responses((status = 200, description = "{task_id}"), (status = 400, description = "bad down_type or nothing to download"), (status = 404)))]
pub async fn download_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateDownload>,
) -> Result<HttpResponse, ApiError> {
    create(&state, &req, body.into_inner()).await
}

/// `{status, s3_key, presign_url}`: RUNNING, FINISH (with a link valid one
/// hour, fresh on every call) or ERROR (with `error`).
#[utoipa::path(post, path = "/projects/download_update", request_body = DownloadTask, tag = "projects",
    responses((status = 200, description = "{status, s3_key, presign_url}"), (status = 404)))]
pub async fn download_update(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<DownloadTask>,
) -> Result<HttpResponse, ApiError> {
    let v = view(&state, &req, &body).await?;
    let finished = v.presign_url.is_some();
    Ok(ok(json!({
        "status": v.row.status,
        "s3_key": finished.then_some(&v.row.zip_key),
        "presign_url": v.presign_url,
        "error": (!v.row.error.is_empty()).then_some(&v.row.error),
    })))
}

/// The same as `projects/download_create`.
#[utoipa::path(post, path = "/dataflow/create_compress_download_task", request_body = CreateDownload, tag = "dataflow",
    responses((status = 200, description = "{task_id}"), (status = 400), (status = 404)))]
pub async fn create_compress_download_task(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateDownload>,
) -> Result<HttpResponse, ApiError> {
    create(&state, &req, body.into_inner()).await
}

fn times(at: i64) -> (String, String, String) {
    let t = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
    (
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d").to_string(),
        t.format("%H:%M:%S").to_string(),
    )
}

/// The full task record.
#[utoipa::path(post, path = "/dataflow/get_compress_download_task", request_body = DownloadTask, tag = "dataflow",
    responses((status = 200, description = "{task_id, down_type, presign_url, process_type, project_id, project_name, s3_key, status, created_time, updated_at, updated_date, updated_time, files, size, error}"), (status = 404)))]
pub async fn get_compress_download_task(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<DownloadTask>,
) -> Result<HttpResponse, ApiError> {
    let v = view(&state, &req, &body).await?;
    let (created_time, _, _) = times(v.row.created_at);
    let (updated_at, updated_date, updated_time) = times(v.row.updated_at);
    let finished = v.presign_url.is_some();
    Ok(ok(json!({
        "task_id": v.row.task_id,
        "down_type": v.row.down_type,
        "presign_url": v.presign_url,
        "process_type": "COMPRESS_DOWNLOAD",
        "project_id": v.row.project_id,
        "project_name": v.row.project_name,
        "s3_key": finished.then_some(&v.row.zip_key),
        "status": v.row.status,
        "created_time": created_time,
        "updated_at": updated_at,
        "updated_date": updated_date,
        "updated_time": updated_time,
        "files": v.row.files,
        "size": v.row.size,
        "error": (!v.row.error.is_empty()).then_some(&v.row.error),
    })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/projects/download_create", web::post().to(download_create))
        .route("/projects/download_update", web::post().to(download_update))
        .route(
            "/dataflow/create_compress_download_task",
            web::post().to(create_compress_download_task),
        )
        .route(
            "/dataflow/get_compress_download_task",
            web::post().to(get_compress_download_task),
        );
}
