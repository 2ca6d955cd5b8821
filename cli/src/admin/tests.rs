use super::*;
use serde_json::json;

#[test]
fn tables_align_and_show_the_next_cursor() {
    let v = json!({
        "items": [
            { "id": "a", "name": "Acme", "region": "eu", "tier": "scale", "status": "active", "rate_limit_per_min": 1000 },
            { "id": "bb", "name": "B", "region": "us", "tier": "starter", "status": "suspended", "rate_limit_per_min": null },
        ],
        "next_cursor": "xyz",
    });
    let t = table(&v, TENANT_COLUMNS);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "ID  NAME  REGION  TIER     STATUS     RATE_LIMIT_PER_MIN"
    );
    assert_eq!(lines[1], "a   Acme  eu      scale    active     1000");
    assert_eq!(lines[2], "bb  B     us      starter  suspended  -");
    assert_eq!(lines[3], "next page: --cursor xyz");
    assert!(table(&json!({"items": []}), ORG_FIELDS).contains("(none)"));
}

#[test]
fn missing_admin_settings_say_how_to_fix_them() {
    let opts = AdminOpts {
        admin_url: None,
        admin_token: None,
        stack: PathBuf::from("/nonexistent/stack.json"),
        json: false,
    };
    let Err(e) = AdminApi::new(&opts) else {
        panic!("no url must be an error");
    };
    assert!(e.to_string().contains("--admin-url"), "{e}");
    assert!(matches!(e, CliError::Config(_)));
    assert_eq!(e.exit(), ExitCode::from(64));
}

#[test]
fn queries_are_encoded() {
    assert_eq!(query(&[("a", None)]), "");
    assert_eq!(
        query(&[
            ("region", Some("eu".into())),
            ("cursor", Some("a+b/=".into()))
        ]),
        "?region=eu&cursor=a%2Bb%2F%3D"
    );
}

#[test]
fn values_the_api_would_refuse_are_not_sent() {
    let e = uuid("org_id", "x").unwrap_err();
    assert!(matches!(e, CliError::Invalid(_)), "{e:?}");
    assert!(e.to_string().starts_with("org_id: "), "{e}");
    assert_eq!(e.exit(), ExitCode::from(1));
}

#[test]
fn update_bodies_say_only_what_was_asked() {
    let body = UpdateTenant {
        limits: Some(LimitsPatch {
            rate_limit_per_min: Some(None),
        }),
        ..UpdateTenant::default()
    };
    assert_eq!(
        shown(&body),
        json!({ "limits": { "rate_limit_per_min": null } })
    );
    assert_eq!(shown(&Reprovision::default()), json!({}));
}
