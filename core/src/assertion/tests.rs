//! Tests of the internal assertion: minting, verification and every refusal.

use super::*;

fn key(kid: &str, fill: u8) -> AssertionKey {
    AssertionKey::new(kid, "HS256", vec![fill; 32]).unwrap()
}

fn region(r: &str) -> RegionId {
    RegionId::new(r).unwrap()
}

fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::new_v4())
}

#[test]
fn roundtrip() {
    let k = key("eu-1", 7);
    let t = tenant();
    let (tok, exp) = Signer::new(region("eu"), &k, 60)
        .mint(t, "user-1", "admin", now_secs())
        .unwrap();
    let c = Verifier::new(region("eu"), &[k]).verify(&tok).unwrap();
    assert_eq!(c.tenant(), t);
    assert_eq!(c.sub, "user-1");
    assert_eq!(c.role, "admin");
    assert_eq!(c.exp, exp);
}

#[test]
fn other_region_is_misdirected_with_or_without_its_key() {
    let us = key("us-1", 1);
    let eu = key("eu-1", 2);
    let (tok, _) = Signer::new(region("us"), &us, 60)
        .mint(tenant(), "s", "", now_secs())
        .unwrap();
    let peers = [region("us"), region("apac")];
    let with_key = Verifier::new(region("eu"), &[eu.clone(), us.clone()])
        .with_peers(&peers)
        .verify(&tok);
    assert_eq!(
        with_key,
        Err(AssertionError::Misdirected {
            audience: "us".into()
        })
    );
    let without = Verifier::new(region("eu"), std::slice::from_ref(&eu))
        .with_peers(&peers)
        .verify(&tok);
    assert!(matches!(without, Err(AssertionError::Misdirected { .. })));
    // The same tokens with `us` not a configured region: plainly invalid (401), not 421.
    let lone = Verifier::new(region("eu"), &[eu.clone(), us]);
    assert_eq!(lone.verify(&tok), Err(AssertionError::Invalid));
    let lone = Verifier::new(region("eu"), &[eu]).with_peers(&[region("apac")]);
    assert_eq!(lone.verify(&tok), Err(AssertionError::UnknownKey));
}

/// A customer's own JWT sent as the assertion names the public API audience and the
/// identity provider: 401, never 421.
#[test]
fn a_foreign_token_with_an_unconfigured_audience_is_not_misdirected() {
    let v = Verifier::new(region("eu"), &[key("eu-1", 7)]).with_peers(&[region("us")]);
    // {"alg":"ES256","kid":"idp-1"} . {"iss":"https://idp.example/","aud":"residency-api"}
    let customer_jwt = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImlkcC0xIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLyIsImF1ZCI6InJlc2lkZW5jeS1hcGkifQ.c2ln";
    assert_eq!(v.verify(customer_jwt), Err(AssertionError::UnknownKey));
    // Even one naming a configured region is not taken for ours unless it claims our issuer.
    // {"alg":"ES256","kid":"idp-1"} . {"iss":"https://idp.example/","aud":"us"}
    let idp_for_us = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImlkcC0xIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLyIsImF1ZCI6InVzIn0.c2ln";
    assert_eq!(v.verify(idp_for_us), Err(AssertionError::UnknownKey));
}

#[test]
fn customer_assertions_never_carry_a_system_identity() {
    let k = key("eu-1", 7);
    let s = Signer::new(region("eu"), &k, 60);
    for (sub, role) in [
        ("user", "system"),
        ("system:x", "owner"),
        ("system:x", "system"),
    ] {
        assert_eq!(
            s.mint(tenant(), sub, role, now_secs()),
            Err(AssertionError::Reserved),
            "{sub} {role}"
        );
    }
    let v = Verifier::new(region("eu"), &[k]);
    let (customer, _) = s.mint(tenant(), "user", "owner", now_secs()).unwrap();
    assert_eq!(v.verify(&customer).unwrap().scp, Scope::Customer);
    let (system, _) = s.mint_system(tenant(), "admin", now_secs()).unwrap();
    let c = v.verify(&system).unwrap();
    assert_eq!(
        (c.scp, c.sub.as_str(), c.role.as_str()),
        (Scope::System, "system:admin", "system")
    );
}

#[test]
fn refusals() {
    let k = key("eu-1", 7);
    let v = Verifier::new(region("eu"), std::slice::from_ref(&k));
    let s = Signer::new(region("eu"), &k, 60);
    // Expired.
    let (tok, _) = s.mint(tenant(), "s", "", now_secs() - 600).unwrap();
    assert_eq!(v.verify(&tok), Err(AssertionError::Expired));
    // Forged: signed with another secret under the same kid.
    let forged = Signer::new(region("eu"), &key("eu-1", 9), 60)
        .mint(tenant(), "s", "", now_secs())
        .unwrap()
        .0;
    assert_eq!(v.verify(&forged), Err(AssertionError::Invalid));
    // Unknown kid for our own region.
    let other = Signer::new(region("eu"), &key("eu-2", 7), 60)
        .mint(tenant(), "s", "", now_secs())
        .unwrap()
        .0;
    assert_eq!(v.verify(&other), Err(AssertionError::UnknownKey));
    // Garbage.
    assert_eq!(v.verify("nope"), Err(AssertionError::Malformed));
    // Tampered payload.
    let (tok, _) = s.mint(tenant(), "s", "", now_secs()).unwrap();
    let mut parts: Vec<&str> = tok.split('.').collect();
    parts[1] = "eyJpc3MiOiJ4In0";
    assert!(v.verify(&parts.join(".")).is_err());
}

#[test]
fn alg_none_is_refused() {
    let k = key("eu-1", 7);
    let v = Verifier::new(region("eu"), &[k]);
    // {"alg":"none","kid":"eu-1"} . {"iss":"residency-gateway","aud":"eu",...} . (empty)
    let tok = "eyJhbGciOiJub25lIiwia2lkIjoiZXUtMSJ9.eyJpc3MiOiJyZXNpZGVuY3ktZ2F0ZXdheSIsImF1ZCI6ImV1IiwidGlkIjoiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIiwic3ViIjoicyIsImlhdCI6MSwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert!(v.verify(tok).is_err());
}

#[test]
fn short_secret_refused() {
    assert!(AssertionKey::new("k", "HS256", vec![0; 31]).is_err());
    assert!(AssertionKey::new("k", "none", vec![0; 32]).is_err());
    assert!(AssertionKey::new("k", "ES256", vec![0; 32]).is_err());
}

#[test]
fn debug_hides_secret() {
    let k = key("kid-x", 0x41);
    assert!(!format!("{k:?}").contains("65"));
    assert!(!format!("{k:?}").contains("AAAA"));
}
