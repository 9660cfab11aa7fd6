//! Signed download links (`links::FileLinks`): `verify` on anything (keys, expiries and
//! signatures of any text, multibyte included) answers exactly "is this the HMAC of the key and
//! the expiry, still ahead"; a link the server made verifies, and one altered does not.
#![no_main]

use chrono::Utc;
use coupon_upload_api::domain::{hex, unhex};
use coupon_upload_api::links::FileLinks;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

fn expected_mac(secret: &[u8], key: &str, expires: i64) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(key.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fuzz_target!(
    |input: (String, Vec<u8>, String, i64, String, u32, u16, u8)| {
        let (base, secret, key, expires, sig, ttl, flip_at, flip_to) = input;
        // Links live at least 2 s, so the one just made is still ahead when it is checked.
        let ttl = 2 + i64::from(ttl);
        let links = FileLinks::new(&base, &secret, ttl);

        // Anything: true exactly for this secret's signature of an expiry still ahead.
        let before = Utc::now().timestamp();
        let verified = links.verify(&key, expires, &sig);
        let after = Utc::now().timestamp();
        let genuine = sig.len() == 64
            && unhex(&sig).is_some_and(|raw| raw == expected_mac(&secret, &key, expires));
        if expires >= after {
            assert_eq!(verified, genuine, "{key:?} {expires} {sig:?}");
        } else if expires < before {
            assert!(!verified);
        }

        // A link this server made verifies; its parts are read back as a client sends them.
        let url = links.url(&key);
        let prefix = format!("{}/files/{}?expires=", base.trim_end_matches('/'), key);
        let query = url.strip_prefix(&prefix).expect("the link's shape");
        let (expires_text, sig) = query.split_once("&sig=").expect("a signature");
        let expires: i64 = expires_text.parse().expect("expires is a number");
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, hex(&expected_mac(&secret, &key, expires)));
        assert!(links.verify(&key, expires, sig));
        assert!(links.verify(&key, expires, &sig.to_ascii_uppercase()));

        // Altered in one digit, or for another key or a longer life: refused.
        let at = usize::from(flip_at) % 64;
        let old = sig.as_bytes()[at];
        let new = b"0123456789abcdef"[usize::from(flip_to) % 16];
        if new != old {
            let mut altered = sig.as_bytes().to_vec();
            altered[at] = new;
            let altered = String::from_utf8(altered).expect("hex");
            assert!(!links.verify(&key, expires, &altered));
        }
        assert!(!links.verify(&key, expires + 1, sig));
        assert!(!links.verify(&format!("{key}x"), expires, sig));
        if !secret.is_empty() {
            let other = FileLinks::new(&base, &secret[1..], ttl);
            // HMAC pads short keys with zeros: only a secret of NULs is the same key one byte shorter.
            if secret.iter().any(|&b| b != 0) {
                assert!(!other.verify(&key, expires, sig));
            }
        }
    }
);
