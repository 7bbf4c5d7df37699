//! The HTTP API (actix-web): routes of the documents in `spec/`, the platform
//! envelope, health, metrics and the OpenAPI document.

pub mod envelope;
pub mod error;
pub mod observe;
pub mod ops;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_domain::bus::Bus;
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};

use crate::store::SqlEventStore;
pub use envelope::Envelope;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub store: SqlEventStore,
    pub bus: Arc<dyn Bus>,
    pub metrics: PrometheusHandle,
}

/// Limits that apply to every route.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tessera",
        description = "Image-dataset projects: upload, preprocess, augment, download."
    ),
    paths(ops::healthz, ops::readyz, ops::metrics),
    components(schemas(ops::Readiness, ops::Check))
)]
pub struct ApiDoc;

/// Registers every route. Shared by `tessera serve` and nothing else: tests speak
/// HTTP to the real server.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>, limits: HttpLimits) {
    cfg.app_data(state)
        .app_data(web::Data::new(limits))
        .app_data(
            web::JsonConfig::default()
                .limit(limits.max_body_bytes)
                .error_handler(|err, _req| error::json_error(err).into()),
        )
        .app_data(web::PayloadConfig::new(limits.max_body_bytes))
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .route(
            "/openapi.json",
            web::get().to(|| async { HttpResponse::Ok().json(ApiDoc::openapi()) }),
        )
        .service(Redoc::with_url("/docs", ApiDoc::openapi()));
}

/// Unknown routes get the envelope too.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
