//! Header rules between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! forwarding headers an app needs to see the real client.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether a field is hop-by-hop by its name alone (not counting those `Connection` names).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"upgrade")
        || HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// Whether the `Connection` header lists `token` (e.g. `close`, `upgrade`), in any case.
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The `Upgrade` protocol a request asks for (e.g. `websocket`), if it asks properly.
pub(crate) fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    connection_has(headers, "upgrade")
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes hop-by-hop headers, including any the `Connection` header names. When `upgrade` is
/// set, the upgrade handshake headers are put back so the tunnel can be negotiated.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    // Most messages carry none: one pass over the names costs less than ten lookups.
    if upgrade.is_none()
        && !headers
            .keys()
            .any(|k| k == header::UPGRADE || HOP_BY_HOP.contains(k))
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
}

/// Sets `X-Forwarded-For` (appended), `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
/// `client` is the client's address as a header value, made once per connection.
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    scheme: &'static str,
    host: &str,
) {
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let ip = client.to_str().unwrap_or_default();
            HeaderValue::try_from(format!("{prev}, {ip}")).ok()
        }
        _ => Some(client.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_REAL_IP, client.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Ok(v) = HeaderValue::try_from(host) {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

/// A client address as a header value (IPv4-mapped IPv6 addresses shown as IPv4).
pub(crate) fn ip_header(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_canonical().to_string())
        .expect("an IP address is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, None);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let up = requested_upgrade(&h);
        assert_eq!(up.as_ref().unwrap(), "websocket");
        strip_hop_by_hop(&mut h, up.as_ref());
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn forwarding_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let ip = ip_header("::ffff:127.0.0.2".parse().unwrap());
        add_forwarding(&mut h, &ip, "http", "a.test");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-real-ip"], "127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.test");
    }
}
