//! `MAX_CONCURRENT_REQUESTS`: past the cap, a request gets 503 at once instead of queueing. One
//! semaphore for the whole router (axum applies layers per route, and one cap must count them all); a
//! request holds its permit until its handler has answered. This replaces tower's concurrency limit,
//! load shedding and axum's `HandleErrorLayer`, which between them allocated and cloned on every
//! request (the profile in docs/benchmarks.md).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::around::{Around, AroundLayer, around};
use super::errors::ApiError;

/// The cap, as a layer.
pub fn layer(max_concurrent_requests: usize) -> AroundLayer<Slot> {
    around(Slot(Arc::new(Semaphore::new(max_concurrent_requests))))
}

/// A request's place under the cap: taken on the way in, given back with the response.
#[derive(Debug, Clone)]
pub struct Slot(Arc<Semaphore>);

impl Around for Slot {
    type Carry = OwnedSemaphorePermit;

    fn before(&self, _: &mut Request) -> Result<OwnedSemaphorePermit, Response> {
        Arc::clone(&self.0).try_acquire_owned().map_err(|_| overloaded())
    }

    fn after(&self, permit: OwnedSemaphorePermit, response: Response) -> Response {
        drop(permit);
        response
    }
}

fn overloaded() -> Response {
    let mut response =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the service is at capacity; retry shortly")
            .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
