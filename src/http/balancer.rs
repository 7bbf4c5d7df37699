//! The balancer API (`balancer/register_ec2`, `balancer/receiver`): here a
//! user's "EC2" is the worker pool their generation jobs go to (see
//! `crate::pools`). Both answer `data: null`, as documented.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tessera_domain::pool::Action;
use utoipa::ToSchema;

use super::projects::{caller, ok};
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
pub struct Register {
    #[serde(default)]
    pub id_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Receiver {
    #[serde(default)]
    pub id_token: Option<String>,
    /// START | STOP (default START).
    #[serde(default)]
    pub action: Option<String>,
}

/// Assigns the caller to a worker pool with free capacity, else to the
/// default pool. Idempotent: a user keeps their pool.
#[utoipa::path(post, path = "/balancer/register_ec2", request_body = Register, tag = "balancer",
    responses((status = 200, description = "data: null"), (status = 401)))]
pub async fn register_ec2(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Register>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    state.pools.register(&who.user_id).await?;
    Ok(ok(serde_json::Value::Null))
}

/// Starts (default) or stops the caller's pool. While a pool is stopped its
/// members' new generation tasks wait; they run when it starts. Jobs already
/// handed to the pool's workers finish. The shared default pool is stopped
/// by admins only (403).
#[utoipa::path(post, path = "/balancer/receiver", request_body = Receiver, tag = "balancer",
    responses((status = 200, description = "data: null"), (status = 400, description = "action is not START or STOP"), (status = 401), (status = 403)))]
pub async fn receiver(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Receiver>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&state, &req, body.id_token.as_deref()).await?;
    let action =
        Action::parse(body.action.as_deref()).map_err(crate::app::error::ServiceError::from)?;
    state
        .pools
        .act(&who.user_id, who.role == "admin", action)
        .await?;
    Ok(ok(serde_json::Value::Null))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/balancer/register_ec2", web::post().to(register_ec2))
        .route("/balancer/receiver", web::post().to(receiver));
}
