//! `CORS_ALLOWED_ORIGINS`: an allow-list, with credentials. `*` allows any origin but never with
//! credentials (and `check --deploy` refuses it in deployed environments).
//!
//! tower-http's layer answers preflights and judges every request that names an `Origin`. Most
//! requests name none (probes, API clients, browsers' same-origin GETs), and for those it adds the
//! same headers every time, yet builds and merges a header map per request; here they are asked of
//! it once, at startup, and copied onto each such response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::around::{Around, AroundFuture};
use super::request_id;

/// The CORS policy, as tower-http's layer. (No private-network access: the one header whose value
/// would depend on more than the `Origin`.)
fn policy(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, request_id::HEADER])
        .expose_headers([request_id::HEADER])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|origin| origin == "*") {
        return base.allow_origin(AllowOrigin::any());
    }
    // Origins were validated by the config; an unlisted origin gets no CORS headers at all.
    let list: Vec<HeaderValue> = origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    base.allow_origin(AllowOrigin::list(list)).allow_credentials(true)
}

/// The headers `policy` adds to a request without `Origin` that is not a preflight: asked of it.
fn without_origin(policy: &CorsLayer) -> Vec<(HeaderName, HeaderValue)> {
    let answer =
        tower::service_fn(|_: Request| async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) });
    let mut future = std::pin::pin!(policy.layer(answer).oneshot(Request::new(Body::empty())));
    // Nothing in it waits: the first poll answers.
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        unreachable!("tower-http's CORS layer answers at once over a service that does");
    };
    response.headers().iter().map(|(name, value)| (name.clone(), value.clone())).collect()
}

pub fn layer(origins: &[String]) -> Cors {
    let policy = policy(origins);
    let fixed = Fixed(without_origin(&policy).into());
    Cors { policy: Arc::new(policy), fixed }
}

/// tower-http's layer is cloned with every copy of the service below it (axum copies the stack per
/// request), and its clone allocates: shared here, and applied only to the requests it concerns.
#[derive(Debug, Clone)]
pub struct Cors {
    policy: Arc<CorsLayer>,
    fixed: Fixed,
}

impl<S> Layer<S> for Cors {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService { policy: Arc::clone(&self.policy), fixed: self.fixed.clone(), inner }
    }
}

/// The headers for requests without `Origin`.
#[derive(Debug, Clone)]
pub struct Fixed(Arc<[(HeaderName, HeaderValue)]>);

impl Around for Fixed {
    type Carry = ();

    fn before(&self, _: &mut Request) -> Result<(), Response> {
        Ok(())
    }

    /// As tower-http merges them: `Vary` added to any the response has, the others replacing.
    fn after(&self, (): (), mut response: Response) -> Response {
        let out = response.headers_mut();
        for (name, value) in self.0.iter() {
            if name == header::VARY {
                out.append(name, value.clone());
            } else {
                out.insert(name, value.clone());
            }
        }
        response
    }
}

#[derive(Debug, Clone)]
pub struct CorsService<S> {
    policy: Arc<CorsLayer>,
    fixed: Fixed,
    inner: S,
}

impl<S> Service<Request> for CorsService<S>
where
    S: Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() != Method::OPTIONS && !request.headers().contains_key(header::ORIGIN) {
            let future = self.inner.call(request);
            return CorsFuture::Fixed { future: AroundFuture::inner(future, self.fixed.clone(), ()) };
        }
        // The clone that was made ready goes to tower-http's layer; a fresh one stays for the next request.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        CorsFuture::Policy { future: self.policy.layer(ready).call(request) }
    }
}

pin_project! {
    #[project = Projected]
    pub enum CorsFuture<F> {
        Fixed { #[pin] future: AroundFuture<Fixed, F> },
        Policy { #[pin] future: tower_http::cors::ResponseFuture<F> },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Fixed { future } => future.poll(cx),
            Projected::Policy { future } => future.poll(cx),
        }
    }
}

impl<F> std::fmt::Debug for CorsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CorsFuture")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    async fn headers_through(
        service: impl Service<Request, Response = Response, Error = std::convert::Infallible>,
        request: Request,
    ) -> HeaderMap {
        service.oneshot(request).await.expect("infallible").headers().clone()
    }

    fn answer() -> impl Service<Request, Response = Response, Error = std::convert::Infallible> + Clone {
        tower::service_fn(|_: Request| async {
            let mut response = Response::new(Body::empty());
            response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            Ok(response)
        })
    }

    #[tokio::test]
    async fn without_origin_the_headers_are_tower_https_own() {
        for origins in [vec!["https://app.example.com".to_owned()], vec!["*".to_owned()], vec![]] {
            let request = || Request::get("/notes").header(header::HOST, "localhost").body(Body::empty()).expect("req");
            let ours = headers_through(layer(&origins).layer(answer()), request()).await;
            let theirs = headers_through(policy(&origins).layer(answer()), request()).await;
            assert_eq!(ours, theirs, "{origins:?}");
            assert_eq!(ours.get_all(header::VARY).iter().count(), 2, "the response's own Vary is kept: {ours:?}");
            assert!(ours.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
        }
    }

    #[tokio::test]
    async fn with_an_origin_or_as_a_preflight_the_policy_judges() {
        let origins = vec!["https://app.example.com".to_owned()];
        let from = |method: Method, origin: &'static str| {
            Request::builder()
                .method(method)
                .uri("/notes")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .expect("req")
        };
        let listed =
            headers_through(layer(&origins).layer(answer()), from(Method::GET, "https://app.example.com")).await;
        assert_eq!(
            listed.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(HeaderValue::as_bytes),
            Some(&b"https://app.example.com"[..])
        );
        let preflight =
            headers_through(layer(&origins).layer(answer()), from(Method::OPTIONS, "https://app.example.com")).await;
        assert!(preflight.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS), "{preflight:?}");
    }
}
