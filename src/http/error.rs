//! The one mapping from errors to HTTP: status code plus the platform envelope.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tessera_domain::{DomainError, StoreError};

use crate::app::error::chain;
use crate::app::ServiceError;

use super::envelope::Envelope;

/// Every error an API route can return. The status of each variant is fixed here
/// and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, missing or mistyped field).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such route or resource (also for other users' resources: no
    /// existence leak).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists for other methods.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (duplicate name, a task
    /// still running, a concurrent change).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but semantically invalid (a value out of range).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: too many requests; retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: a backing service (database, bus, storage) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure. The cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    /// The status to answer with; an internal error's cause chain is logged
    /// here, for every envelope (the auth dialects render their own bodies).
    pub fn status_logged(&self) -> StatusCode {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %chain(cause.as_ref()), "request failed");
        }
        self.status_code()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::Conflict("the resource was changed by another request; retry".into())
            }
            StoreError::Duplicate { constraint } => {
                ApiError::Conflict(format!("{constraint} is already taken"))
            }
            e @ StoreError::Unavailable(_) => {
                tracing::warn!(error = %chain(&e), "event store unavailable");
                ApiError::Unavailable("the event store is unavailable; retry later".into())
            }
            e @ (StoreError::Failed(_) | StoreError::Corrupt { .. }) => ApiError::internal(e),
        }
    }
}

/// The name the platform dialects (which mirror Amazon Cognito and
/// DynamoDB) give each refusal, as the first word of the message:
/// `NotAuthorizedException: Incorrect username or password.` Clients match
/// on it; the domain's own words carry no vendor's names.
fn exception_name(e: &DomainError) -> Option<&'static str> {
    Some(match e {
        DomainError::InvalidPassword(_) => "InvalidPasswordException",
        DomainError::UsernameExists(_) => "UsernameExistsException",
        DomainError::NotAuthorized(_) => "NotAuthorizedException",
        DomainError::NotConfirmed => "UserNotConfirmedException",
        DomainError::CodeMismatch => "CodeMismatchException",
        DomainError::ExpiredCode => "ExpiredCodeException",
        DomainError::LimitExceeded(_) => "LimitExceededException",
        DomainError::TooManyRequests(_) => "TooManyRequestsException",
        // The platform API's documented name of a duplicate project (DynamoDB's).
        DomainError::NameTaken(_) => "ConditionalCheckFailedException",
        DomainError::Invalid(_)
        | DomainError::NotFound(_)
        | DomainError::Conflict(_)
        | DomainError::Forbidden(_) => return None,
    })
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let message = match exception_name(&e) {
            Some(name) => format!("{name}: {e}"),
            None => e.to_string(),
        };
        match e {
            DomainError::Invalid(_)
            | DomainError::InvalidPassword(_)
            | DomainError::CodeMismatch
            | DomainError::ExpiredCode => ApiError::BadRequest(message),
            DomainError::UsernameExists(_)
            | DomainError::NameTaken(_)
            | DomainError::Conflict(_) => ApiError::Conflict(message),
            DomainError::NotAuthorized(_) => ApiError::Unauthorized(message),
            DomainError::NotConfirmed | DomainError::Forbidden(_) => ApiError::Forbidden(message),
            DomainError::LimitExceeded(_) | DomainError::TooManyRequests(_) => {
                ApiError::TooManyRequests(message)
            }
            DomainError::NotFound(_) => ApiError::NotFound(message),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => d.into(),
            ServiceError::Store(s) => s.into(),
            e @ (ServiceError::Stale | ServiceError::Internal { .. }) => ApiError::internal(e),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_logged()).json(Envelope::<()>::failure(self.to_string()))
    }
}

/// Turns the JSON extractor's failures into the envelope with the right status.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as J;
    match err {
        J::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(format!(
            "request body of {length} bytes is over the limit of {limit} bytes"
        )),
        J::Overflow { limit } => {
            ApiError::PayloadTooLarge(format!("request body is over the limit of {limit} bytes"))
        }
        J::ContentType => ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json)".into(),
        ),
        J::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
        J::Serialize(e) => ApiError::internal(e),
        J::Payload(e) => ApiError::BadRequest(format!("cannot read the request body: {e}")),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// JSON extractor settings whose errors are rendered by `render`: each auth
/// dialect answers bad bodies in its own envelope.
pub fn json_config_with(
    limit: usize,
    render: impl Fn(ApiError) -> HttpResponse + Send + Sync + 'static,
) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            actix_web::error::InternalError::from_response(String::new(), render(json_error(err)))
                .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_503_and_a_failed_statement_500() {
        let outage = ApiError::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!(outage.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let failed = ApiError::from(StoreError::Failed("no such column".into()));
        assert_eq!(failed.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        // The cause is logged, never shown.
        assert_eq!(failed.to_string(), "internal error");
    }

    #[test]
    fn the_platform_names_lead_the_message_and_the_domain_has_none() {
        let e = DomainError::NotAuthorized("Incorrect username or password.".into());
        assert_eq!(e.to_string(), "Incorrect username or password.");
        assert_eq!(
            ApiError::from(e).to_string(),
            "NotAuthorizedException: Incorrect username or password."
        );
        let taken = ApiError::from(DomainError::NameTaken("taken".into()));
        assert_eq!(taken.status_code(), StatusCode::CONFLICT);
        assert!(taken
            .to_string()
            .starts_with("ConditionalCheckFailedException: "));
        // Plain refusals carry no vendor name.
        assert_eq!(
            ApiError::from(DomainError::NotFound("task not found".into())).to_string(),
            "task not found"
        );
    }
}
