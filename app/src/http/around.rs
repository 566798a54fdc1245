//! The service's own middleware without axum's `from_fn`, which on every request and in every layer
//! takes the request apart and back together for its extractors, boxes the layer's future, and boxes
//! the service below it into `Next` (the profile in docs/benchmarks.md). The layers written against
//! `Around` do no I/O: each looks at the request on its way in and at the response on its way out,
//! and its future is the inner service's, wrapped in place: no allocation, no dynamic call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// A layer's two halves. State lives in `self` (cloned with the stack, so keep it behind an `Arc`).
pub trait Around: Clone + Send + Sync + 'static {
    /// What the way in hands to the way out, per request.
    type Carry: Send + 'static;

    /// The request on its way in: passed on, with what `after` needs, or answered here (then `after`
    /// does not run, as a `from_fn` layer that returns early does not reach its own code after `next`).
    #[allow(clippy::result_large_err, reason = "a response is what axum passes by value everywhere")]
    fn before(&self, request: &mut Request) -> Result<Self::Carry, Response>;

    /// The response on its way out; by default, as it came.
    fn after(&self, carry: Self::Carry, response: Response) -> Response {
        drop(carry);
        response
    }
}

/// `around` as a tower layer.
pub fn around<A: Around>(around: A) -> AroundLayer<A> {
    AroundLayer(around)
}

#[derive(Debug, Clone)]
pub struct AroundLayer<A>(A);

impl<A: Around, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService { around: self.0.clone(), inner }
    }
}

#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AroundFuture<A, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.around.before(&mut request) {
            Ok(carry) => AroundFuture::inner(self.inner.call(request), self.around.clone(), carry),
            Err(response) => AroundFuture::answered(response),
        }
    }
}

pin_project! {
    #[project = Projected]
    pub enum AroundFuture<A: Around, F> {
        Answered { response: Option<Response> },
        Inner { #[pin] inner: F, after: Option<(A, A::Carry)> },
    }
}

impl<A: Around, F> AroundFuture<A, F> {
    /// A response given without the inner service.
    pub fn answered(response: Response) -> Self {
        Self::Answered { response: Some(response) }
    }

    /// The inner service's future, its response passed to `around.after` with `carry`.
    pub fn inner(inner: F, around: A, carry: A::Carry) -> Self {
        Self::Inner { inner, after: Some((around, carry)) }
    }
}

impl<A, F, R, E> Future for AroundFuture<A, F>
where
    A: Around,
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Answered { response } => Poll::Ready(Ok(response.take().expect("polled after completion"))),
            Projected::Inner { inner, after } => {
                let response = ready!(inner.poll(cx))?.into_response();
                let (around, carry) = after.take().expect("polled after completion");
                Poll::Ready(Ok(around.after(carry, response)))
            }
        }
    }
}

impl<A: Around, F> std::fmt::Debug for AroundFuture<A, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AroundFuture")
    }
}
