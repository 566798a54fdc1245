//! Any `X-Forwarded-For` chain: the client is the peer or an address the chain really holds.
#![no_main]

use std::net::IpAddr;

use app::http::proxy::resolve;
use axum::http::{HeaderMap, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|values: Vec<&str>| {
    let mut headers = HeaderMap::new();
    for value in &values {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append("x-forwarded-for", value);
        }
    }
    let peer: IpAddr = [10, 0, 0, 1].into();
    let proxies = ["10.0.0.0/8".parse().expect("a network")];
    let client = resolve(Some(peer), &headers, &Uri::from_static("/"), &proxies);
    let ip = client.ip.expect("a peer was given");
    let named = values
        .iter()
        .flat_map(|value| value.split(','))
        .any(|hop| hop.trim().parse::<IpAddr>().is_ok_and(|hop| hop.to_canonical() == ip.to_canonical()));
    assert!(ip == peer || named, "{ip} came from nowhere");
    // An untrusted peer's headers count for nothing.
    assert_eq!(resolve(Some([192, 0, 2, 1].into()), &headers, &Uri::from_static("/"), &proxies).ip, Some([192, 0, 2, 1].into()));
});
