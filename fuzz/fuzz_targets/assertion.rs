//! The internal assertion's verification on a node: arbitrary token text is refused; arbitrary
//! claims JSON signed with the region's key is accepted only when it names this region, a
//! tenant, and a lifetime within the limit.
#![no_main]
use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use residency_core::assertion::{AssertionKey, Verifier};
use residency_core::RegionId;

const SECRET: &[u8] = b"fuzz-assertion-secret-0123456789abcdef";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = AssertionKey::new("eu-1", "HS256", SECRET.to_vec()).unwrap();
        Verifier::new(RegionId::new("eu").unwrap(), &[key])
            .with_peers(&[RegionId::new("us").unwrap()])
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => {
            if let Ok(token) = std::str::from_utf8(rest) {
                assert!(verifier().verify(token).is_err(), "unsigned token accepted");
            }
        }
        Some((_, claims)) => {
            let input = format!(
                "{}.{}",
                B64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"eu-1"}"#),
                B64.encode(claims)
            );
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
            let token = format!("{input}.{}", B64.encode(tag.as_ref()));
            if let Ok(c) = verifier().verify(&token) {
                assert_eq!(c.aud, "eu");
                assert!(c.exp >= c.iat);
            }
        }
        None => {}
    }
});
