//! A layer's inner service behind an `Arc`. axum's `from_fn` and `HandleError` clone their inner
//! service on every request, and an inner service is the whole stack below: cloned by each layer
//! above it, the stack cost grew with the square of its depth (the profile in docs/benchmarks.md:
//! a third of a `/healthz` request went to cloning and dropping middleware). Shared, a clone is one
//! counter increment and each layer clones only the layer right below it.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt};

/// Wraps `layer` so that the service it wraps is shared.
pub fn shared<L>(layer: L) -> Sharing<L> {
    Sharing(layer)
}

#[derive(Debug, Clone)]
pub struct Sharing<L>(L);

impl<S, L: Layer<Shared<S>>> Layer<S> for Sharing<L> {
    type Service = L::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(Shared(Arc::new(inner)))
    }
}

#[derive(Debug)]
pub struct Shared<S>(Arc<S>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S, R> Service<R> for Shared<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Oneshot<S, R>;

    /// Readiness is the inner service's, checked by the oneshot on its own clone.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        S::clone(&self.0).oneshot(request)
    }
}
