use super::*;
use crate::auth::{api_key, AuthError};
use residency_core::{ApiKeyEntry, TenantEntry};

const T1: &str = "0190a5c4-0000-7000-8000-000000000001";
const T2: &str = "0190a5c4-0000-7000-8000-000000000002";

fn tenant(id: &str, region: &str, tier: Tier, status: TenantStatus) -> TenantEntry {
    TenantEntry {
        id: id.parse().unwrap(),
        name: String::new(),
        region: RegionId::new(region).unwrap(),
        tier,
        status,
        rate_limit_per_min: None,
    }
}

fn regions() -> Vec<RegionId> {
    vec![RegionId::new("eu").unwrap(), RegionId::new("us").unwrap()]
}

#[tokio::test]
async fn statuses_map_to_refusals() {
    let mut file = DirectoryFile::default();
    for (i, status) in [
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Provisioning,
        TenantStatus::Moving,
        TenantStatus::Deleted,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("0190a5c4-0000-7000-8000-00000000001{i}");
        file.tenants.push(tenant(&id, "eu", Tier::Growth, status));
    }
    let d = Directory::from_file(file, &regions()).unwrap();
    let get = |i: u8| {
        d.resolve(
            format!("0190a5c4-0000-7000-8000-00000000001{i}")
                .parse()
                .unwrap(),
        )
    };
    assert_eq!(get(0).await.unwrap().rate_limit_per_min, 500);
    assert_eq!(get(1).await, Err(DirectoryError::Suspended));
    assert_eq!(get(2).await, Err(DirectoryError::Unavailable));
    // A moving tenant is served (for reads: the proxy refuses its writes).
    assert_eq!(get(3).await.unwrap().status, TenantStatus::Moving);
    assert_eq!(get(4).await, Err(DirectoryError::UnknownTenant));
    assert_eq!(
        d.resolve(T2.parse().unwrap()).await,
        Err(DirectoryError::UnknownTenant)
    );
    let h = d.health();
    assert_eq!(
        (h.source, h.loaded, h.serving, h.stale_for),
        ("file", true, true, None)
    );
}

#[test]
fn bad_entries_are_all_reported() {
    let mut file = DirectoryFile::default();
    file.tenants
        .push(tenant(T1, "apac", Tier::Starter, TenantStatus::Active));
    file.tenants
        .push(tenant(T1, "eu", Tier::Starter, TenantStatus::Active));
    file.api_keys.push(ApiKeyEntry {
        id: "k".into(),
        tenant: T1.parse().unwrap(),
        prefix: "abcdefgh".into(),
        hash: "xyz".into(),
        role: String::new(),
        expires_at: None,
        revoked: false,
    });
    let keys: Vec<_> = Directory::from_file(file, &regions())
        .unwrap_err()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        [
            "tenants[0].region",
            "tenants[1].id",
            "api_keys[0].hash",
            "api_keys[0].tenant"
        ]
    );
}

#[tokio::test]
async fn api_keys_verify_by_hash_and_refuse_revoked_or_expired() {
    let good = format!("rk_abcdefgh_{}", "s".repeat(40));
    let revoked = format!("rk_revoked1_{}", "r".repeat(40));
    let expired = format!("rk_expired1_{}", "e".repeat(40));
    let entry = |id: &str, key: &str, prefix: &str| ApiKeyEntry {
        id: id.into(),
        tenant: T1.parse().unwrap(),
        prefix: prefix.into(),
        hash: api_key::hash_hex(key),
        role: "developer".into(),
        expires_at: None,
        revoked: false,
    };
    let mut file = DirectoryFile::default();
    file.tenants
        .push(tenant(T1, "eu", Tier::Scale, TenantStatus::Active));
    file.api_keys.push(entry("k1", &good, "abcdefgh"));
    file.api_keys.push(ApiKeyEntry {
        revoked: true,
        ..entry("k2", &revoked, "revoked1")
    });
    file.api_keys.push(ApiKeyEntry {
        expires_at: Some(100),
        ..entry("k3", &expired, "expired1")
    });
    let d = Directory::from_file(file, &regions()).unwrap();
    let verify = |key: String| {
        let d = &d;
        async move { api_key::verify(&key, d, 1000).unwrap() }
    };
    let ctx = verify(good.clone()).await.unwrap();
    assert_eq!(ctx.tenant, T1.parse().unwrap());
    assert_eq!(ctx.subject, "apikey:k1");
    assert_eq!(ctx.role, "developer");
    // Same prefix, different secret.
    let forged = format!("rk_abcdefgh_{}", "t".repeat(40));
    assert_eq!(verify(forged).await, Err(AuthError::InvalidApiKey));
    assert_eq!(verify(revoked).await, Err(AuthError::ApiKeyRevoked));
    assert_eq!(verify(expired).await, Err(AuthError::ApiKeyRevoked));
    assert_eq!(
        verify("rk_nope".into()).await,
        Err(AuthError::InvalidApiKey)
    );
    // A well-formed key with an unknown prefix.
    let unknown = format!("rk_unknown1_{}", "u".repeat(40));
    assert_eq!(verify(unknown).await, Err(AuthError::InvalidApiKey));
}

#[test]
fn api_keys_need_a_tier_that_allows_them() {
    let mut file = DirectoryFile::default();
    file.tenants
        .push(tenant(T1, "eu", Tier::Starter, TenantStatus::Active));
    file.api_keys.push(ApiKeyEntry {
        id: "k".into(),
        tenant: T1.parse().unwrap(),
        prefix: "abcdefgh".into(),
        hash: "0".repeat(64),
        role: String::new(),
        expires_at: None,
        revoked: false,
    });
    let problems = Directory::from_file(file, &regions()).unwrap_err();
    assert_eq!(problems[0].key, "api_keys[0].tenant");
}

#[test]
fn file_domains_are_checked_and_active() {
    use residency_core::domain::DomainEntry;
    let entry = |host: &str, tenant: &str| DomainEntry {
        hostname: host.into(),
        tenant: tenant.parse().unwrap(),
        cert_ref: None,
    };
    let mut file = DirectoryFile::default();
    file.tenants
        .push(tenant(T1, "eu", Tier::Scale, TenantStatus::Active));
    file.domains.push(entry("api.one.example", T1));
    let d = Directory::from_file(file.clone(), &regions()).unwrap();
    assert_eq!(
        d.domains().tenant_of("api.one.example"),
        Some(T1.parse().unwrap())
    );
    assert_eq!(d.domains().tenant_of("other.example"), None);

    file.domains.push(entry("api.one.example", T1));
    file.domains.push(entry("API.two.example", T1));
    file.domains.push(entry("api.three.example", T2));
    file.domains.push(DomainEntry {
        cert_ref: Some("../etc".into()),
        ..entry("api.four.example", T1)
    });
    file.domains.push(entry("*.five.example", T1));
    let keys: Vec<String> = Directory::from_file(file, &regions())
        .unwrap_err()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        [
            "domains[1].hostname",
            "domains[2].hostname",
            "domains[3].tenant",
            "domains[4].cert_ref",
            "domains[5].hostname"
        ]
    );
}
