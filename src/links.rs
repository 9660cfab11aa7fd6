//! Signed, expiring download links (`/files/<key>?expires=<unix>&sig=<hex>`).
//!
//! The signature is HMAC-SHA256 over the key and the expiry with a server secret, so a link is
//! checked without a database lookup and cannot be altered to reach another file or live longer.
//! Instances that share storage must share the secret (`FILE_LINK_SECRET`).

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct FileLinks {
    base_url: String,
    /// HMAC keyed with the secret once; each signature starts from a copy.
    keyed: Hmac<Sha256>,
    ttl_secs: i64,
}

impl std::fmt::Debug for FileLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLinks")
            .field("base_url", &self.base_url)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The longest a link may stay valid: a year.
pub const MAX_TTL_SECS: i64 = 365 * 24 * 3600;

impl FileLinks {
    /// `ttl_secs` is held to 1 s ..= [`MAX_TTL_SECS`] (the flag is checked the same way).
    pub fn new(base_url: &str, secret: &[u8], ttl_secs: i64) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            // `new_from_slice` accepts keys of any length for HMAC.
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
            ttl_secs: ttl_secs.clamp(1, MAX_TTL_SECS),
        }
    }

    fn mac(&self, key: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// An absolute link to `key`, valid for the configured time.
    pub fn url(&self, key: &str) -> String {
        let expires = Utc::now().timestamp().saturating_add(self.ttl_secs);
        let sig = crate::domain::hex(&self.mac(key, expires).finalize().into_bytes());
        format!(
            "{}/files/{}?expires={expires}&sig={sig}",
            self.base_url, key
        )
    }

    /// `true` when `sig` is this server's signature of `key` and `expires` is still ahead.
    pub fn verify(&self, key: &str, expires: i64, sig: &str) -> bool {
        if expires < Utc::now().timestamp() || sig.len() != 64 {
            return false;
        }
        let Some(raw) = crate::domain::unhex(sig) else {
            return false;
        };
        self.mac(key, expires).verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::FileLinks;

    /// A lifetime out of range is held to it: a huge one neither overflows nor makes links that
    /// never verify, and a negative one does not make every link expired.
    #[test]
    fn out_of_range_lifetimes_are_held_to_the_range() {
        for ttl in [i64::MAX, -5, 0] {
            let links = FileLinks::new("http://h", b"secret", ttl);
            let url = links.url("org/1/x.csv");
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let (mut expires, mut sig) = (0i64, "");
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("expires", v)) => expires = v.parse().unwrap_or(0),
                    Some(("sig", v)) => sig = v,
                    _ => {}
                }
            }
            assert!(
                links.verify("org/1/x.csv", expires, sig),
                "ttl {ttl}: {url}"
            );
            let now = chrono::Utc::now().timestamp();
            assert!(expires - now <= super::MAX_TTL_SECS, "ttl {ttl}: {url}");
        }
    }

    fn parts(url: &str) -> (String, i64, String) {
        let rest = url.split("/files/").nth(1).unwrap_or_default();
        let (key, query) = rest.split_once('?').unwrap_or_default();
        let mut expires = 0;
        let mut sig = String::new();
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap_or_default(),
                Some(("sig", v)) => sig = v.to_owned(),
                _ => {}
            }
        }
        (key.to_owned(), expires, sig)
    }

    #[test]
    fn signed_links_verify_and_resist_tampering() {
        let links = FileLinks::new("http://h:1/", b"secret", 60);
        let url = links.url("org/1/jobs/2/errors.csv");
        assert!(url.starts_with("http://h:1/files/org/1/jobs/2/errors.csv?expires="));
        let (key, expires, sig) = parts(&url);
        assert!(links.verify(&key, expires, &sig));
        assert!(
            !links.verify("org/2/jobs/2/errors.csv", expires, &sig),
            "other key"
        );
        assert!(!links.verify(&key, expires + 1, &sig), "longer life");
        let mut tampered = sig.clone();
        let last = if tampered.ends_with('0') { "1" } else { "0" };
        tampered.replace_range(63.., last);
        assert!(!links.verify(&key, expires, &tampered), "other signature");
        // Not hex, or not ASCII: refused, never sliced inside a character.
        for bad in [
            format!("a\u{e9}{}", "0".repeat(61)),
            format!("{}\u{e9}", "0".repeat(62)),
            "\u{1F600}".repeat(16),
            "zz".repeat(32),
        ] {
            assert_eq!(bad.len(), 64, "{bad:?}");
            assert!(!links.verify(&key, expires, &bad), "{bad:?}");
        }
        assert!(
            !FileLinks::new("http://h:1", b"other", 60).verify(&key, expires, &sig),
            "other secret"
        );
        // A genuine signature of a time gone by.
        let past = chrono::Utc::now().timestamp() - 10;
        use hmac::Mac;
        let s = crate::domain::hex(&links.mac("a", past).finalize().into_bytes());
        assert!(!links.verify("a", past, &s), "expired");
        assert!(!links.verify(&key, expires, "zz"), "malformed");
    }
}
