//! Properties of the parsers that read untrusted input, over generated input (proptest): configuration
//! values, `Host`, `X-Forwarded-For`, request ids, and the notes list's pagination query and cursor. The same
//! parsers have cargo-fuzz targets in `fuzz/` for longer runs (`cargo xtask fuzz`).

use std::net::IpAddr;

use app::config::{Config, parse_duration};
use app::http::hosts::{allowed, host_name};
use app::http::proxy::resolve;
use app::http::request_id::is_sane;
use app::notes::{Page, cursor};
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Uri};
use proptest::prelude::*;
use uuid::Uuid;

const VARIABLES: &[&str] = &[
    "APP_ENV",
    "LISTEN_ADDR",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_ACQUIRE_TIMEOUT",
    "ALLOWED_HOSTS",
    "CORS_ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "SECURE_HSTS_SECONDS",
    "API_LIMIT_PER_CALLER",
    "MAX_BODY_BYTES",
    "SESSION_IDLE_TIMEOUT",
    "LOG_LEVEL",
    "DEBUG",
];

fn config_with(name: &str, value: &str) -> Result<Config, app::config::ConfigError> {
    Config::from_lookup(&|key| match key {
        "DATABASE_URL" => Some("postgres://prop@localhost/prop".to_owned()),
        key if key == name => Some(value.to_owned()),
        _ => None,
    })
}

proptest! {
    #[test]
    fn any_configuration_value_is_read_or_refused_by_name(which in 0..VARIABLES.len(), value in any::<String>()) {
        let name = VARIABLES[which];
        if let Err(problems) = config_with(name, &value) {
            prop_assert!(!problems.0.is_empty());
            // Every problem names its variable and the fix; the database URL, which may hold a
            // password, is never repeated.
            for problem in &problems.0 {
                prop_assert!(!problem.variable.is_empty() && !problem.fix.is_empty(), "{problem}");
            }
            prop_assert!(!problems.to_string().contains("postgres://prop"), "{problems}");
        }
    }

    #[test]
    fn durations_round_trip_in_every_unit(amount in 0_u64..1_000_000, unit in prop::sample::select(vec![("ms", 1_u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)])) {
        let parsed = parse_duration(&format!("{amount}{}", unit.0)).expect("a well-formed duration");
        prop_assert_eq!(parsed.as_millis(), u128::from(amount * unit.1));
    }

    #[test]
    fn any_duration_text_parses_or_is_refused(text in any::<String>()) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn host_names_are_lower_case_plain_and_stable(value in any::<String>()) {
        if let Some(name) = host_name(&value) {
            prop_assert_eq!(&name, &name.to_ascii_lowercase());
            prop_assert!(!name.is_empty() && !name.contains([' ', '/', '@', '\r', '\n']));
            prop_assert_eq!(host_name(&name), Some(name));
        }
        prop_assert!(!allowed(&value, &[]));
    }

    #[test]
    fn a_host_with_a_port_is_its_name(name in "[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,20}){0,3}", port in any::<u16>()) {
        let (with_port, subdomain, domain, lookalike) =
            (format!("{}:{port}", name.to_uppercase()), format!("api.{name}"), format!(".{name}"), format!("{name}.evil"));
        prop_assert_eq!(host_name(&with_port), Some(name.clone()));
        prop_assert!(allowed(&name, std::slice::from_ref(&name)));
        prop_assert!(allowed(&subdomain, std::slice::from_ref(&domain)));
        prop_assert!(!allowed(&lookalike, std::slice::from_ref(&name)));
    }

    #[test]
    fn the_client_is_the_peer_or_a_hop_of_the_chain(hops in prop::collection::vec(prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        "10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        any::<String>(),
    ], 0..6)) {
        let mut headers = HeaderMap::new();
        for hop in &hops {
            if let Ok(value) = HeaderValue::from_str(hop) {
                headers.append("x-forwarded-for", value);
            }
        }
        let peer: IpAddr = [10, 0, 0, 1].into();
        let proxies = ["10.0.0.0/8".parse().expect("a network")];
        let ip = resolve(Some(peer), &headers, &Uri::from_static("/"), &proxies).ip.expect("the peer is known");
        let named = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            // An IPv4-mapped IPv6 hop counts as the IPv4 address it maps.
            .any(|hop| hop.trim().parse::<IpAddr>().is_ok_and(|hop| hop.to_canonical() == ip.to_canonical()));
        prop_assert!(ip == peer || named, "{ip} is neither the peer nor a hop");
        // An untrusted peer's forwarding headers count for nothing.
        let stranger: IpAddr = [192, 0, 2, 1].into();
        prop_assert_eq!(resolve(Some(stranger), &headers, &Uri::from_static("/"), &proxies).ip, Some(stranger));
    }

    #[test]
    fn sane_request_ids_are_short_plain_and_echoable(value in any::<String>()) {
        if is_sane(&value) {
            prop_assert!((1..=64).contains(&value.len()));
            prop_assert!(HeaderValue::from_str(&value).is_ok());
            prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
        }
    }

    #[test]
    fn plain_request_ids_up_to_64_are_kept(value in "[A-Za-z0-9._:-]{1,64}") {
        prop_assert!(is_sane(&value));
    }

    #[test]
    fn any_pagination_query_is_a_page_or_a_refusal(query in any::<String>()) {
        let encoded: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
        for text in [format!("/api/v1/notes?{encoded}"), format!("/api/v1/notes?after={encoded}&limit={encoded}")] {
            let uri: Uri = text.parse().expect("a percent-encoded query is a valid URI");
            let _ = Query::<Page>::try_from_uri(&uri);
        }
    }

    #[test]
    fn a_cursor_opens_only_for_the_account_and_key_it_was_sealed_with(
        key in prop::collection::vec(any::<u8>(), 1..64),
        account in any::<u128>(),
        note in any::<u128>(),
        stranger in any::<u128>(),
    ) {
        let (account, note, stranger) = (Uuid::from_u128(account), Uuid::from_u128(note), Uuid::from_u128(stranger));
        let sealed = cursor::seal(&key, account, note);
        prop_assert_eq!(sealed.len(), 38);
        prop_assert_eq!(cursor::open(&key, account, &sealed), Some(note));
        prop_assume!(stranger != account);
        prop_assert_eq!(cursor::open(&key, stranger, &sealed), None);
        prop_assert_eq!(cursor::open(b"another key", account, &sealed), None);
    }

    #[test]
    fn a_changed_cursor_is_refused(position in 0_usize..38, replacement in "[A-Za-z0-9_-]") {
        let (account, note) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = cursor::seal(b"key", account, note);
        let mut changed = sealed.clone();
        changed.replace_range(position..=position, &replacement);
        prop_assume!(changed != sealed);
        prop_assert_eq!(cursor::open(b"key", account, &changed), None);
    }

    #[test]
    fn any_text_is_refused_as_a_cursor(text in any::<String>()) {
        prop_assert_eq!(cursor::open(b"key", Uuid::from_u128(1), &text), None);
    }
}
