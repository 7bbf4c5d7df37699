//! Operational endpoints: liveness, readiness, metrics.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

/// Readiness: the event store and the bus answer.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready", body = Readiness),
    (status = 503, description = "a dependency is down", body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.ping().await;
    let bus = state.bus.ping().await;
    let checks = vec![
        Check {
            name: format!("event_store ({:?})", state.store.dialect()).to_lowercase(),
            ok: store.is_ok(),
            error: store.err().map(|e| e.to_string()),
        },
        Check {
            name: format!("bus ({})", state.bus.name()),
            ok: bus.is_ok(),
            error: bus.err().map(|e| e.to_string()),
        },
    ];
    let ready = checks.iter().all(|c| c.ok);
    let body = Readiness { ready, checks };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text: request counts and latency, appended events, projection lag.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Ok(statuses) = crate::follow::projections::status(&state.store).await {
        for s in statuses {
            ::metrics::gauge!("tessera_projection_lag_events", "projection" => s.name)
                .set(s.lag as f64);
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
