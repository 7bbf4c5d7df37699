//! Request ids, request logs and request metrics: one middleware for all routes.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts a client's `x-request-id` if it is short and printable, else makes one;
/// echoes it on the response, logs the request in a span carrying it, and counts it.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    // The route pattern, not the raw path, keeps metric cardinality bounded.
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!("tessera_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds",
        "method" => method, "route" => route)
    .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "served");
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}

/// Refuses a request whose declared body is over the limit before any of it is
/// read, whatever the route (JSON routes also enforce the limit while reading
/// bodies without a length).
pub async fn limit_body(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = req
        .app_data::<actix_web::web::Data<super::HttpLimits>>()
        .map(|l| l.max_body_bytes);
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(length)) = (limit, declared) {
        if length > limit as u64 {
            let err = super::ApiError::PayloadTooLarge(format!(
                "request body of {length} bytes is over the limit of {limit} bytes"
            ));
            let res = actix_web::ResponseError::error_response(&err);
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}
