//! The process's TLS crypto provider for the clients that report out (error reports, traces): rustls
//! with ring, installed once, so that no OpenSSL or aws-lc build is needed.

pub fn install_provider() {
    // Already installed (by an earlier call): that one serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
