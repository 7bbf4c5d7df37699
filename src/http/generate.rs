//! `generate/...`: the method catalog, generation requests, task progress
//! (polled, or pushed as server-sent events) and cancel.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::generation::{self, MethodKind, RawOverrides};
use tessera_domain::project::data::DataKind;
use tessera_domain::task::{GenerationRequest, TaskStatus};
use tessera_projections::tasks::TaskRow;
use utoipa::ToSchema;

use super::projects::{caller, ok};
use super::{ApiError, AppState};
use crate::app::generation::Request;
use crate::app::identity::Principal;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenOnly {
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Every method with its parameters (ranges and defaults are an addition to
/// the documented `{method_id, method_name}`).
#[utoipa::path(post, path = "/generate/list_method", request_body = TokenOnly, tag = "generate",
    responses((status = 200, description = "{augmentation: [...], preprocessing: [...]}")))]
pub async fn list_method(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenOnly>,
) -> Result<HttpResponse, ApiError> {
    caller(&state, &req, body.id_token.as_deref()).await?;
    let of = |k| generation::of_kind(k).collect::<Vec<_>>();
    Ok(ok(json!({
        "augmentation": of(MethodKind::Augment),
        "preprocessing": of(MethodKind::Preprocess),
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Images {
    #[serde(default)]
    pub id_token: Option<String>,
    pub project_id: String,
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub ls_method_id: Vec<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub num_aug_p_img: Option<i64>,
    pub data_number: Vec<i64>,
    /// Reproduce an earlier run: the `seed` its task recorded.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Expert mode: method id → parameter name → value.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: RawOverrides,
    /// Method id → file name of the reference image to use. A method that
    /// uses one and is left out gets the project's image (of `data_type`)
    /// with the median metric (brightness, hue, saturation; signal-to-noise
    /// for the rest), measured by the workers before the run
    /// (PREPARING_DATA).
    #[serde(default)]
    pub reference_images: BTreeMap<String, String>,
}

/// Start augmentation or preprocessing of the project's images.
#[utoipa::path(post, path = "/generate/images", request_body = Images, tag = "generate",
    responses((status = 200, description = "{task_id, times_generated, times_preprocessed, seed}"), (status = 400), (status = 404), (status = 409, description = "a task is running"), (status = 429, description = "run limit")))]
pub async fn images(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Images>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let body = body.into_inner();
    let data_type = match body.data_type.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => DataKind::parse(t)?,
        None => DataKind::Original,
    };
    let r = state
        .generation
        .request(
            &who,
            Request {
                project_id: body.project_id,
                seed: body.seed,
                request: GenerationRequest {
                    method_ids: body.ls_method_id,
                    data_type,
                    num_aug_p_img: body.num_aug_p_img,
                    data_number: body.data_number,
                    overrides: body.parameters,
                    references: body.reference_images,
                },
            },
        )
        .await?;
    Ok(ok(json!({
        "task_id": r.task_id,
        "times_generated": r.times_generated,
        "times_preprocessed": r.times_preprocessed,
        "seed": r.seed,
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ByTask {
    #[serde(default)]
    pub id_token: Option<String>,
    pub task_id: String,
}

fn progress_json(row: &TaskRow, failures: &[(String, String)]) -> Value {
    json!({
        "task_id": row.task_id,
        "project_id": row.project_id,
        "process_type": row.kind,
        "status": row.status,
        "number_finished": row.number_finished,
        "number_gen_images": row.number_gen_images,
        "created_time": row.created_at,
        "updated_time": row.updated_at,
        "error": if row.error.is_empty() { Value::Null } else { json!(row.error) },
        "failures": failures.iter().map(|(f, r)| json!({"filename": f, "reason": r})).collect::<Vec<_>>(),
    })
}

/// Status and progress of a task.
#[utoipa::path(post, path = "/generate/task_progress", request_body = ByTask, tag = "generate",
    responses((status = 200, description = "{task_id, status, number_finished, number_gen_images, created_time, updated_time, error, failures}"), (status = 404)))]
pub async fn task_progress(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ByTask>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let (row, failures) = state.generation.progress(&who, &body.task_id).await?;
    Ok(ok(progress_json(&row, &failures)))
}

/// Cancel a task; the outputs it recorded are removed.
#[utoipa::path(post, path = "/generate/cancel", request_body = ByTask, tag = "generate",
    responses((status = 200, description = "{}"), (status = 404), (status = 409, description = "already ended")))]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ByTask>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    state.generation.cancel(&who, &body.task_id).await?;
    Ok(ok(json!({})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    pub task_id: String,
    /// The ID token (EventSource cannot send headers); else a Bearer token.
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Server-sent events: the task's progress as JSON each time it changes,
/// until it ends (a comment every 15 s keeps proxies from closing it).
#[utoipa::path(get, path = "/generate/task_progress/stream", params(StreamQuery), tag = "generate",
    responses((status = 200, description = "text/event-stream of progress objects"), (status = 404)))]
pub async fn task_progress_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let who: Principal = caller(&state, &req, query.id_token.as_deref()).await?;
    let task_id = query.task_id.clone();
    // Unknown or foreign tasks are a 404 before the stream opens.
    state.generation.progress(&who, &task_id).await?;
    let appended = state.store.appended();
    let initial = (state, who, task_id, appended, None::<Value>, false);
    let stream = futures::stream::unfold(
        initial,
        |(state, who, task_id, mut appended, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let (current, ended) = match state.generation.progress(&who, &task_id).await {
                    Ok((row, failures)) => (
                        progress_json(&row, &failures),
                        TaskStatus::parse(&row.status).is_some_and(TaskStatus::is_final),
                    ),
                    Err(e) => {
                        let line = format!(
                            "event: error\ndata: {}\n\n",
                            json!({"message": e.to_string()})
                        );
                        return Some((
                            Ok::<_, actix_web::Error>(web::Bytes::from(line)),
                            (state, who, task_id, appended, last, true),
                        ));
                    }
                };
                if last.as_ref() != Some(&current) {
                    let line = format!("data: {current}\n\n");
                    return Some((
                        Ok(web::Bytes::from(line)),
                        (state, who, task_id, appended, Some(current), ended),
                    ));
                }
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {
                        return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), (state, who, task_id, appended, last, false)));
                    }
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/generate/list_method", web::post().to(list_method))
        .route("/generate/images", web::post().to(images))
        .route("/generate/task_progress", web::post().to(task_progress))
        .route(
            "/generate/task_progress/stream",
            web::get().to(task_progress_stream),
        )
        .route("/generate/cancel", web::post().to(cancel));
}
