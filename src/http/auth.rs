//! Reading the presented API key from a request's headers.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// Capillary's header, accepted beside `Authorization: Bearer`.
pub const CAPILLARY_TOKEN_HEADER: &str = "x-cap-api-oauth-token";

/// The key from `Authorization: Bearer <key>` or `X-CAP-API-OAUTH-TOKEN: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(key.trim());
    }
    headers
        .get(CAPILLARY_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_capillary_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(CAPILLARY_TOKEN_HEADER, "k1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert(AUTHORIZATION, "bearer  k2 ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }
}
