//! The request-smuggling guard's HTTP/1 framing over arbitrary bytes in arbitrary pieces.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| residency_gateway::fuzz::smuggle_framing(data));
