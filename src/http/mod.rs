//! The HTTP API (actix-web): routes of the documents in `spec/`, the platform
//! envelope, health, metrics and the OpenAPI document.

pub mod auth;
pub mod balancer;
pub mod download;
pub mod envelope;
pub mod error;
pub mod generate;
pub mod observe;
pub mod ops;
pub mod otp_api;
pub mod platform_auth;
pub mod projects;
pub mod roles_api;
pub mod users_api;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use tessera_domain::bus::Bus;
use utoipa::OpenApi;
use utoipa_redoc::{Redoc, Servable};

use crate::adapters::store::SqlEventStore;
use crate::app::identity::Identity;
pub use envelope::Envelope;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub store: SqlEventStore,
    pub bus: Arc<dyn Bus>,
    pub metrics: PrometheusHandle,
    pub identity: Arc<Identity>,
    pub projects: Arc<crate::app::projects::Projects>,
    pub generation: Arc<crate::app::generation::Generation>,
    pub downloads: Arc<crate::app::downloads::Downloads>,
    pub pools: Arc<crate::app::pools::Pools>,
    pub auth_limits: auth::AuthLimits,
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
    paths(
        ops::healthz, ops::readyz, ops::metrics,
        platform_auth::user_signup, platform_auth::auth_confirm, platform_auth::resend_confirmcode,
        platform_auth::user_login, platform_auth::refresh_token, platform_auth::user_logout,
        platform_auth::forgot_password, platform_auth::confirm_code_forgot_password,
        platform_auth::test, platform_auth::template_invite_mail, platform_auth::reference_email,
        platform_auth::login_google,
        users_api::create, users_api::login, users_api::verify_token, users_api::refresh,
        users_api::reset_password, users_api::reset_verify, users_api::update_password,
        otp_api::signup, otp_api::login, otp_api::req_reset_password, otp_api::reset_password,
        otp_api::req_otp_code, otp_api::verify_otp_code,
        roles_api::user_register, roles_api::merchant_register, roles_api::login, roles_api::logout,
        projects::create, projects::list, projects::list_info, projects::info,
        projects::update_info, projects::delete, projects::create_sample,
        projects::upload_check, projects::upload_urls, projects::upload_update,
        projects::delete_images, projects::list_data,
        generate::list_method, generate::images, generate::task_progress,
        generate::task_progress_stream, generate::cancel,
        download::download_create, download::download_update,
        download::create_compress_download_task, download::get_compress_download_task,
        balancer::register_ec2, balancer::receiver,
    ),
    components(schemas(ops::Readiness, ops::Check, platform_auth::Tokens, users_api::UsersEnvelope)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

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
        .service(Redoc::with_url("/docs", ApiDoc::openapi()))
        .configure(platform_auth::routes)
        .configure(projects::routes)
        .configure(generate::routes)
        .configure(download::routes)
        .configure(balancer::routes)
        .configure(|c| users_api::routes(c, limits.max_body_bytes))
        .configure(|c| otp_api::routes(c, limits.max_body_bytes))
        .configure(|c| roles_api::routes(c, limits.max_body_bytes));
}

/// Unknown routes get the envelope too.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
