//! Credential extraction from `Authorization` / `X-Api-Key` and the API-key format.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| residency_gateway::fuzz::credentials(data));
