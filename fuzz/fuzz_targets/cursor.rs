//! The keyset cursor decoder: a cursor either decodes to a key that encodes back to it, or
//! is refused.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = residency_http::page::decode_cursor(text) {
            assert!(!text.is_empty() || key.is_empty());
        }
        let _ = residency_http::page::decode_uuid_cursor(text);
        let _ = residency_http::page::limit_text(Some(text));
    }
});
