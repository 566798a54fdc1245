//! Load shedding: past the concurrency cap (the layer below), a request gets 503 at once instead of
//! queueing. tower's `load_shed` says so with an error that axum's `HandleErrorLayer` turns into the
//! response, cloning the stack below and boxing a future on every request; this layer answers itself.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::around::{AroundFuture, Pass};
use super::errors::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct ShedLayer;

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed { inner, ready: false }
    }
}

#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    /// Whether the layer below had room when last asked.
    ready: bool,
}

fn overloaded() -> Response {
    let mut response =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the service is at capacity; retry shortly")
            .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

impl<S> Service<Request> for Shed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<Pass, S::Future>;

    /// Always ready: a request that finds no room is answered rather than kept waiting.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = self.inner.poll_ready(cx).is_ready();
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if std::mem::take(&mut self.ready) {
            AroundFuture::inner(self.inner.call(request), Pass, ())
        } else {
            AroundFuture::answered(overloaded())
        }
    }
}
