//! JWT verification: arbitrary token text (always refused), and arbitrary header and claims
//! JSON signed with the trusted key (accepted only with claims that keep the rules).
#![no_main]
use std::sync::OnceLock;

static JWT: OnceLock<residency_gateway::fuzz::Jwt> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let jwt = JWT.get_or_init(residency_gateway::fuzz::Jwt::new);
    match data.split_first() {
        Some((0, rest)) => jwt.token(rest),
        Some((&n, rest)) => {
            let (header, claims) = rest.split_at(usize::from(n).min(rest.len()));
            jwt.signed(header, claims);
        }
        None => {}
    }
});
