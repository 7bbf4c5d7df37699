//! The platform envelope: `{"data", "error", "success", "message"}`.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub data: Option<T>,
    /// true if the request failed.
    pub error: bool,
    /// true if the request succeeded.
    pub success: bool,
    /// null on success, else what went wrong.
    pub message: Option<String>,
}

impl<T> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Envelope {
            data: Some(data),
            error: false,
            success: true,
            message: None,
        }
    }

    pub fn failure(message: String) -> Self {
        Envelope {
            data: None,
            error: true,
            success: false,
            message: Some(message),
        }
    }
}
