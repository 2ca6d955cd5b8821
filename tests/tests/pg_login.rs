//! A Postgres that answers but refuses the connection is named as such, never as
//! "unreachable" (issue 16): an unknown role (SQLSTATE 28000) and an unknown database
//! (3D000) on the shared server (trust auth on 127.0.0.1 accepts any password there), and a
//! wrong password (28P01) on a throw-away SCRAM cluster ([`TlsPostgres`]), through
//! [`residency_pg::tls::refusal`] / [`residency_pg::tls::reason`] and
//! [`residency_pg::Target::connect`], which every connection of the project goes through,
//! and the directory's pool.

use integration_tests::admin_url;
use integration_tests::tls_postgres::TlsPostgres;
use residency_pg::tls::{reason, refusal, Refusal};
use residency_pg::Target;
use uuid::Uuid;

/// The error of connecting to `url`.
async fn refused(url: &str) -> tokio_postgres::Error {
    let t = Target::parse(url).unwrap();
    match t.config().connect(t.tls()).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e,
    }
}

fn with_path_and_user(base: &str, user: Option<&str>, db: &str) -> String {
    let mut u = url::Url::parse(base).unwrap();
    if let Some(user) = user {
        u.set_username(user).unwrap();
    }
    u.set_path(db);
    u.to_string()
}

#[tokio::test]
async fn an_unknown_role_or_database_is_a_refusal_not_an_outage() {
    let role = format!("no_such_role_{}", Uuid::new_v4().simple());
    let url = with_path_and_user(&admin_url(), Some(&role), "postgres");
    let e = refused(&url).await;
    assert_eq!(refusal(&e), Some(Refusal::Authorization), "{e:?}");
    let why = reason(&e);
    assert!(
        why.contains("rejected the login")
            && why.contains("SQLSTATE 28000")
            && why.contains(&role)
            && why.contains("pg_hba.conf"),
        "{why}"
    );
    let Err(e) = Target::parse(&url).unwrap().connect().await else {
        panic!("{url} connected");
    };
    assert!(
        e.to_string().starts_with("cannot connect to ")
            && e.to_string().contains("rejected the login"),
        "{e}"
    );

    let db = format!("no_such_db_{}", Uuid::new_v4().simple());
    let e = refused(&with_path_and_user(&admin_url(), None, &db)).await;
    assert_eq!(refusal(&e), Some(Refusal::NoDatabase), "{e:?}");
    assert!(!Refusal::NoDatabase.is_login());
    let why = reason(&e);
    assert!(
        why.contains("no such database") && why.contains("SQLSTATE 3D000") && why.contains(&db),
        "{why}"
    );

    // The directory's pool reports it as the directory being unavailable, with the cause
    // named (it was "directory error 28000", an unexpected 500).
    let store = residency_directory::Store::connect(&url).await.unwrap();
    let e = store.tenants().await.unwrap_err();
    assert!(
        matches!(e, residency_directory::StoreError::Unavailable(_))
            && e.to_string().contains("rejected the login"),
        "{e:?}"
    );

    // A server that does not answer is no refusal.
    let e = refused("postgres://postgres@127.0.0.1:1/postgres").await;
    assert_eq!(refusal(&e), None);
    assert!(!reason(&e).contains("rejected"), "{}", reason(&e));
}

#[tokio::test]
async fn a_wrong_password_is_named() {
    let pg = TlsPostgres::start();
    let admin = pg.admin_url(&pg.verify_full());
    let role = format!("pw_{}", Uuid::new_v4().simple());
    let (client, conn) = Target::parse(&admin).unwrap().connect().await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'right0password0right0password'"
        ))
        .await
        .unwrap();
    let url = format!(
        "postgres://{role}:wrong0password@localhost:{}/postgres?{}",
        pg.port,
        pg.verify_full()
    );
    let e = refused(&url).await;
    assert_eq!(refusal(&e), Some(Refusal::Password), "{e:?}");
    assert!(Refusal::Password.is_login());
    let why = reason(&e);
    assert!(
        why.contains("wrong password") && why.contains("SQLSTATE 28P01"),
        "{why}"
    );
    assert!(!why.contains("wrong0password"), "{why}");
    // The right password logs in: the refusal was the password, not the TLS set-up.
    let ok = url.replace("wrong0password", "right0password0right0password");
    assert!(Target::parse(&ok).unwrap().connect().await.is_ok());
}
