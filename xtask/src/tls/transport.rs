//! instant-acme's requests sent by the xtask's one HTTP client (ureq over rustls with ring), and the
//! executor that drives its futures: the transport blocks, so every future is ready when first polled
//! and no async runtime is needed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use camino::Utf8Path;
use http_body_util::BodyExt as _;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Sends ACME requests with ureq: the public roots, or only those of `directory_ca` (a private or test CA).
pub(crate) struct Transport {
    agent: ureq::Agent,
}

impl Transport {
    pub(crate) fn new(directory_ca: Option<&Utf8Path>) -> Result<Self> {
        let roots = match directory_ca {
            None => RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading --directory-ca {path}"))?;
                let certificates: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(certificate),
                        _ => None,
                    })
                    .collect();
                if certificates.is_empty() {
                    bail!("--directory-ca {path} holds no PEM certificate");
                }
                RootCerts::Specific(Arc::new(certificates))
            }
        };
        let agent = ureq::Agent::config_builder()
            // ACME errors are JSON problem documents that instant-acme reads: hand every status back.
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(Self { agent })
    }
}

impl HttpClient for Transport {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let agent = self.agent.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // instant-acme's request bodies are in memory: collecting them cannot fail.
            let Ok(body) = body.collect().await.map(http_body_util::Collected::to_bytes);
            let request = http::Request::from_parts(parts, body.to_vec());
            let response = agent.run(request).map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            let (parts, mut body) = response.into_parts();
            let body = body.read_to_vec().map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            Ok(BytesResponse { parts, body: Box::new(Bytes::from(body)) })
        })
    }
}

/// Runs `future` to completion on this thread. Nothing in the ACME exchange waits on a reactor (the
/// transport blocks, the polls sleep on the thread), so a pending poll only yields.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}
