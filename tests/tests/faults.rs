//! Faults with real processes: a `residency-gateway` process in front of `region-node serve`
//! processes (us, eu, apac), each on its own database, a Postgres directory, one customer per
//! region. Each test breaks one thing for real (SIGKILL, SIGSTOP, `pg_ctl stop`, a killed
//! `redis-server`) and checks, on every request it makes:
//! (a) only the affected region's customers see errors;
//! (b) recovery needs no restart of anything else (the gateway, and the node whose database
//!     went away, keep their pid);
//! (c) no request crosses regions: `x-residency-region` is always the customer's home and a
//!     200 body's `tenant_id` the caller's own.
//!
//! Graceful drain under load: SIGTERM to the gateway, then to a node, during a constant
//! load on keep-alive connections ([`integration_tests::load`]); every request in flight
//! completes, nothing is cut or lost, new connections are refused once the listener closes.
//!
//! Everything waits on readiness or polls with a deadline (a hang guard, not a speed claim).
//! Covered elsewhere and not repeated here: a Redis unreachable from the start or that never
//! answers (`gateway/tests/ratelimit.rs`), a Redis TLS failure (`ratelimit_tls.rs`), last
//! good JWKS keys when the endpoint is down or a fetch fails
//! (`gateway/tests/jwks_https.rs::{a_jwks_endpoint_that_is_down_keeps_the_last_good_keys,
//! a_failed_discovery_keeps_the_last_good_keys}`, `auth::jwks` tests).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::directory::DirectoryDb;
use integration_tests::process::{
    free_port, region_toml, until, GatewayOptions, GatewayProcess, NodeProcess,
};
use integration_tests::tls_postgres::TlsPostgres;
use integration_tests::{load, Node, NodeOptions, RegionDb, Response};
use nix::sys::signal::Signal;
use serde_json::json;
use uuid::Uuid;

/// The gateway's upstream timeout in these tests.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the databases live: the shared server, or a per-test cluster for one of them.
#[derive(Default)]
struct Placement<'a> {
    /// The eu region's database on this cluster.
    eu_on: Option<&'a TlsPostgres>,
    /// The directory on this cluster.
    directory_on: Option<&'a TlsPostgres>,
}

/// Gateway, nodes, databases and one customer per region.
struct Deployment {
    gw: GatewayProcess,
    nodes: Vec<NodeProcess>,
    /// `(region, tenant id)`.
    tenants: Vec<(String, String)>,
    _dbs: Vec<RegionDb>,
    _dir: DirectoryDb,
}

async fn region_db(region: &str, on: Option<&TlsPostgres>) -> RegionDb {
    match on {
        Some(pg) => RegionDb::create_on(&pg.admin_url(&pg.verify_full()), region).await,
        None => RegionDb::create(region).await,
    }
}

impl Deployment {
    async fn start(regions: &[&str], place: Placement<'_>, extra: &str) -> Self {
        let dir = match place.directory_on {
            Some(pg) => DirectoryDb::create_on(&pg.admin_url(&pg.verify_full())).await,
            None => DirectoryDb::create().await,
        };
        let mut dbs = Vec::new();
        for r in regions {
            dbs.push(region_db(r, place.eu_on.filter(|_| *r == "eu")).await);
        }
        let nodes: Vec<NodeProcess> =
            futures_util::future::join_all(regions.iter().zip(&dbs).map(|(r, db)| {
                NodeProcess::start(db, r, &[("RESIDENCY__DATABASE__POOL_SIZE", "8")])
            }))
            .await;
        let region_lines: String = nodes
            .iter()
            .map(|n| region_toml(n.region.as_str(), &[n.addr()], &n.key_file()))
            .collect();
        let limits = format!(
            "upstream_timeout = \"{}s\"\nshutdown_grace = \"10s\"",
            UPSTREAM_TIMEOUT.as_secs()
        );
        let gw = GatewayProcess::start(&GatewayOptions {
            directory_url: &dir.reader_url,
            writer_url: &dir.writer_url,
            regions: region_lines,
            limits: &limits,
            extra,
            jwks: None,
        })
        .await;
        let mut tenants = Vec::new();
        for r in regions {
            let id = gw
                .create_tenant(
                    &format!("{r}-{}", &Uuid::new_v4().simple().to_string()[..8]),
                    r,
                    100_000,
                )
                .await;
            tenants.push(((*r).to_owned(), id));
        }
        Self {
            gw,
            nodes,
            tenants,
            _dbs: dbs,
            _dir: dir,
        }
    }

    fn node(&self, region: &str) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|n| n.region.as_str() == region)
            .unwrap()
    }

    fn node_mut(&mut self, region: &str) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.region.as_str() == region)
            .unwrap()
    }

    fn tenant(&self, region: &str) -> &str {
        &self.tenants.iter().find(|(r, _)| r == region).unwrap().1
    }

    /// `GET /v1/me` as `region`'s customer, checked for (c): the home region on every
    /// answer that names one, the caller's own tenant in a 200.
    async fn me(&self, region: &str) -> Response {
        let tenant = self.tenant(region);
        let r = self.gw.me(tenant).await;
        if let Some(h) = r.headers.get("x-residency-region") {
            assert_eq!(h, region, "answer from another region: {r:?}");
        }
        if r.status == StatusCode::OK {
            assert_eq!(
                r.json["tenant_id"], tenant,
                "another tenant's answer: {r:?}"
            );
            assert_eq!(r.json["region"], region, "{r:?}");
            assert!(r.headers.contains_key("x-residency-region"), "{r:?}");
        }
        r
    }

    /// (a): every region but `except` answers its customer 200.
    async fn others_served(&self, except: &str) {
        for (region, _) in &self.tenants {
            if region != except {
                let r = self.me(region).await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{region} while {except} is down: {r:?}"
                );
            }
        }
    }

    async fn all_served(&self) {
        self.others_served("").await;
    }
}

/// A 503 with a `Retry-After` of at least one second.
fn unavailable_with_retry_after(r: &Response) -> bool {
    r.status == StatusCode::SERVICE_UNAVAILABLE
        && r.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
}

#[tokio::test]
async fn a_killed_node_fails_only_its_region_and_serves_again_once_restarted() {
    let mut d = Deployment::start(&["us", "eu", "apac"], Placement::default(), "").await;
    d.all_served().await;
    let gateway = d.gw.pid();

    d.node_mut("eu").kill().await;
    let s = &d;
    until(
        "eu answered 503 + Retry-After",
        Duration::from_secs(20),
        || async move {
            let d = s;
            let r = d.me("eu").await;
            assert!(
                matches!(
                    r.status,
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                ),
                "a dead node's customer got {r:?}"
            );
            d.others_served("eu").await;
            unavailable_with_retry_after(&r).then_some(())
        },
    )
    .await;
    assert!(d.gw.region_unavailable("eu").await);

    // The same binary, config and port: the gateway finds it by itself.
    d.node_mut("eu").restart().await;
    let s = &d;
    until("eu served again", Duration::from_secs(20), || async move {
        let d = s;
        let r = d.me("eu").await;
        assert!(
            r.status.is_server_error() || r.status == StatusCode::OK,
            "{r:?}"
        );
        d.others_served("eu").await;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        d.gw.running() && d.gw.pid() == gateway,
        "the gateway was restarted"
    );
}

#[tokio::test]
async fn a_hung_node_times_out_then_is_skipped_until_it_answers_readyz() {
    let mut d = Deployment::start(&["us", "eu", "apac"], Placement::default(), "").await;
    d.all_served().await;
    let gateway = d.gw.pid();
    let s = &d;

    d.node("apac").pause().await;
    // The kernel still accepts its connections; nothing answers. The first request waits for
    // the upstream timeout, while the other regions are served meanwhile.
    let started = tokio::time::Instant::now();
    let (hung, ()) = tokio::join!(d.me("apac"), d.others_served("apac"));
    let waited = started.elapsed();
    assert_eq!(hung.status, StatusCode::GATEWAY_TIMEOUT, "{hung:?}");
    assert!(waited >= UPSTREAM_TIMEOUT, "504 after {waited:?}");
    // The configured timeout is honoured (3x is slack for a loaded machine, not a speed claim).
    assert!(waited < UPSTREAM_TIMEOUT * 3, "504 only after {waited:?}");

    // Its `/readyz` checks time out: skipped, 503 + Retry-After without waiting.
    until("apac skipped", Duration::from_secs(20), || async move {
        let r = s.me("apac").await;
        assert!(
            matches!(
                r.status,
                StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{r:?}"
        );
        unavailable_with_retry_after(&r).then_some(())
    })
    .await;
    assert!(d.gw.region_unavailable("apac").await);
    d.others_served("apac").await;

    d.node("apac").signal(Signal::SIGCONT);
    until(
        "apac served again",
        Duration::from_secs(20),
        || async move {
            let r = s.me("apac").await;
            s.others_served("apac").await;
            (r.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    assert!(
        d.gw.running() && d.gw.pid() == gateway,
        "the gateway was restarted"
    );
}

#[tokio::test]
async fn a_regions_database_down_fails_only_that_region_and_recovers_without_a_restart() {
    let pg = TlsPostgres::start();
    let mut d = Deployment::start(
        &["us", "eu", "apac"],
        Placement {
            eu_on: Some(&pg),
            ..Placement::default()
        },
        "",
    )
    .await;
    d.all_served().await;
    let (gateway, node) = (d.gw.pid(), d.node("eu").pid());
    // Concurrent requests fill the node's pool: every one of those connections dies below.
    futures_util::future::join_all((0..16).map(|_| d.me("eu"))).await;

    pg.stop();
    let s = &d;
    until(
        "eu skipped by the gateway",
        Duration::from_secs(20),
        || async move {
            let d = s;
            let r = d.me("eu").await;
            assert!(r.status.is_server_error(), "eu without its database: {r:?}");
            d.others_served("eu").await;
            d.gw.region_unavailable("eu").await.then_some(())
        },
    )
    .await;
    assert!(
        !d.node("eu").ready().await,
        "readyz passes without a database"
    );
    let r = d.me("eu").await;
    assert!(unavailable_with_retry_after(&r), "{r:?}");

    pg.resume();
    until("eu served again", Duration::from_secs(30), || async move {
        let d = s;
        let r = d.me("eu").await;
        d.others_served("eu").await;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;
    // Served again means served: no request pays for a connection that died in the outage.
    for r in futures_util::future::join_all((0..16).map(|_| d.me("eu"))).await {
        assert_eq!(r.status, StatusCode::OK, "after the recovery: {r:?}");
    }
    assert_eq!(d.node("eu").pid(), node, "the node was restarted");
    assert!(
        d.gw.running() && d.gw.pid() == gateway,
        "the gateway was restarted"
    );
}

#[tokio::test]
async fn with_the_directory_down_cached_customers_are_served_and_unknown_ones_get_503() {
    let pg = TlsPostgres::start();
    let d = Deployment::start(
        &["us", "eu"],
        Placement {
            directory_on: Some(&pg),
            ..Placement::default()
        },
        "",
    )
    .await;
    d.all_served().await;
    let fresh = |want: bool| {
        let d = &d;
        async move {
            let r = d.gw.admin(Method::GET, "/readyz", None).await;
            (r.json["directory"]["fresh"] == want).then_some(())
        }
    };

    pg.stop();
    until("the directory is stale", Duration::from_secs(30), || {
        fresh(false)
    })
    .await;
    for _ in 0..3 {
        d.all_served().await;
    }
    // Not in the cache: fail closed, neither "unknown" (404) nor "unauthenticated" (401).
    let unknown = d.gw.me(&Uuid::new_v4().to_string()).await;
    assert!(unavailable_with_retry_after(&unknown), "{unknown:?}");

    pg.resume();
    until("the directory is fresh", Duration::from_secs(30), || {
        fresh(true)
    })
    .await;
    // A change made after the return is seen: a new customer, and a suspension.
    let newcomer = d.gw.create_tenant("newcomer", "us", 100_000).await;
    let (s, newcomer) = (&d, &newcomer);
    until(
        "the new customer is served",
        Duration::from_secs(10),
        || async move { (s.gw.me(newcomer).await.status == StatusCode::OK).then_some(()) },
    )
    .await;
    let r =
        d.gw.admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{}", d.tenant("eu")),
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    until(
        "the suspension is seen",
        Duration::from_secs(10),
        || async move { (s.me("eu").await.status == StatusCode::FORBIDDEN).then_some(()) },
    )
    .await;
    d.others_served("eu").await;
    until(
        "an unknown customer is 404 again",
        Duration::from_secs(10),
        || async move {
            let r = s.gw.me(&Uuid::new_v4().to_string()).await;
            (r.status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
}

/// A plain `redis-server` on `port`, killed on drop.
async fn redis_on(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    until(
        "redis-server accepts connections",
        Duration::from_secs(20),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    child
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn redis_killed_mid_run_means_local_limiting_then_redis_again_once_it_is_back() {
    let port = free_port();
    let mut redis = redis_on(port).await;
    let section = format!(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/\"\n\
         redis_timeout = \"200ms\"\nredis_key_prefix = \"residency:faults:{}:\"",
        Uuid::new_v4()
    );
    let d = Deployment::start(&["eu"], Placement::default(), &section).await;
    let s = &d;
    let metrics = || async move { s.gw.admin(Method::GET, "/metrics", None).await.text };
    let by_redis = |t: &str| {
        metric(
            t,
            "residency_gateway_ratelimit_decisions_total",
            &[("backend", "redis")],
        )
    };
    let fallbacks = |t: &str| metric(t, "residency_gateway_ratelimit_fallback_total", &[]);

    let before = metrics().await;
    d.all_served().await;
    assert!(
        by_redis(&metrics().await) > by_redis(&before),
        "not limited in redis"
    );

    redis.kill().await.unwrap();
    let before = metrics().await;
    for _ in 0..20 {
        let r = d.me("eu").await;
        assert_eq!(r.status, StatusCode::OK, "with redis gone: {r:?}");
        assert!(r.headers.contains_key("ratelimit-limit"), "{r:?}");
    }
    assert!(
        fallbacks(&metrics().await) >= fallbacks(&before) + 20,
        "not limited locally"
    );

    let _redis = redis_on(port).await;
    until(
        "decisions in redis again",
        Duration::from_secs(30),
        || async move {
            let before = by_redis(&metrics().await);
            let r = s.me("eu").await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            (by_redis(&metrics().await) > before).then_some(())
        },
    )
    .await;
}

/// The node's pooled connections die while idle (`pg_terminate_backend`, as in a database
/// restart or failover): the next requests get new connections, none fails for a dead one.
#[tokio::test]
async fn pooled_connections_killed_while_idle_cost_no_request() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions { pool_size: 4 }).await;
    let tenant = Uuid::new_v4();
    node.provision(tenant, "acme").await;
    let me = || node.call(Method::GET, "/v1/me", tenant, "u", "viewer", None);
    for r in futures_util::future::join_all((0..8).map(|_| me())).await {
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let admin = integration_tests::connect(&db.admin_db_url).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&db.roles[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 2, "{killed} pooled connections");
    until("the backends are gone", Duration::from_secs(10), || async {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&db.roles[1]],
            )
            .await
            .unwrap()
            .get(0);
        (left == 0).then_some(())
    })
    .await;
    for _ in 0..8 {
        let r = me().await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a dead pooled connection was used: {r:?}"
        );
    }
    node.stop().await;
}

/// The load of the drain tests: ~1,000 req/s for 4 s over 16 keep-alive connections.
const LOAD: load::Plan = load::Plan {
    rate: 1000,
    duration: Duration::from_secs(4),
    connections: 16,
};

/// When the drain tests send SIGTERM, since the start of the load.
const SIGTERM_AT: Duration = Duration::from_millis(1500);

/// Runs [`LOAD`] against `d`'s gateway and calls `signal` at [`SIGTERM_AT`]; returns the
/// report and when the signal was sent, since the start of the load.
async fn load_and_signal(d: &Deployment, signal: impl FnOnce()) -> (load::Report, Duration) {
    let start = tokio::time::Instant::now();
    let load = tokio::spawn(load::run(start, d.gw.public, calls(d), LOAD));
    tokio::time::sleep_until(start + SIGTERM_AT).await;
    let signalled = start.elapsed();
    signal();
    (load.await.unwrap(), signalled)
}

/// `GET /v1/me` calls for every customer of `d`, one reused JWT each.
fn calls(d: &Deployment) -> Arc<Vec<load::Call>> {
    Arc::new(
        d.tenants
            .iter()
            .map(|(region, tenant)| {
                let token = d.gw.idp.token(tenant, "load", "viewer");
                load::Call {
                    head: format!(
                        "GET /v1/me HTTP/1.1\r\nhost: gateway.test\r\nauthorization: Bearer {token}\r\n\r\n"
                    ),
                    region: region.clone(),
                    tenant: tenant.clone(),
                }
            })
            .collect(),
    )
}

/// Prints the figures of a drain run whose signal went at `at`.
fn print(what: &str, report: &load::Report, at: Duration) {
    let before = report.records.iter().filter(|r| r.sent < at).count();
    let in_flight = report
        .records
        .iter()
        .filter(|r| r.sent < at && r.ended >= at)
        .count();
    eprintln!(
        "{what}: {} requests ({:.0}/s, latest {:?} behind schedule), {before} sent before \
         SIGTERM ({:.0}/s), {in_flight} in flight at SIGTERM; outcomes {:?}",
        report.records.len(),
        report.rate(&LOAD),
        report.max_lag,
        before as f64 / at.as_secs_f64(),
        report.counts()
    );
}

#[tokio::test]
async fn sigterm_to_the_gateway_under_load_loses_no_request_in_flight() {
    let mut d = Deployment::start(&["us", "eu"], Placement::default(), "").await;
    d.all_served().await;
    let pid = d.gw.pid();
    let (report, at) = load_and_signal(&d, || {
        integration_tests::process::signal(pid, Signal::SIGTERM);
    })
    .await;
    let status = d.gw.wait(Duration::from_secs(20)).await;
    print("gateway SIGTERM", &report, at);
    assert!(status.success(), "{status:?}");
    for r in &report.records {
        match &r.outcome {
            load::Outcome::Answered(200) => {}
            // After the signal: the listener is closed, new connections are refused.
            load::Outcome::Refused if r.sent >= at => {}
            other => panic!("{other:?} for a request sent at {:?}", r.sent),
        }
    }
    assert!(
        report
            .records
            .iter()
            .any(|r| r.outcome == load::Outcome::Refused),
        "nothing was refused after the drain"
    );
}

#[tokio::test]
async fn sigterm_to_a_node_under_load_completes_its_requests_then_the_gateway_answers_503() {
    let mut d = Deployment::start(&["eu"], Placement::default(), "").await;
    d.all_served().await;
    let (report, at) = load_and_signal(&d, || d.node("eu").signal(Signal::SIGTERM)).await;
    let status = d.node_mut("eu").wait(Duration::from_secs(20)).await;
    print("node SIGTERM", &report, at);
    // The gateway's 502s are refused connections to the closed listener, never a request
    // cut on a connection the node was draining.
    let metrics = d.gw.admin(Method::GET, "/metrics", None).await.text;
    let errors = |kind| {
        metric(
            &metrics,
            "residency_gateway_upstream_errors_total",
            &[("error_kind", kind)],
        )
    };
    eprintln!(
        "node SIGTERM: gateway upstream errors: connect {}, io {}, timeout {}",
        errors("connect"),
        errors("io"),
        errors("timeout")
    );
    assert_eq!(errors("io"), 0, "requests failed on a draining connection");
    assert_eq!(errors("timeout"), 0);
    assert!(status.success(), "{status:?}");
    for r in &report.records {
        match &r.outcome {
            load::Outcome::Answered(200) => {}
            load::Outcome::Answered(502 | 503) if r.sent >= at => {}
            other => panic!("{other:?} for a request sent at {:?}", r.sent),
        }
    }
    assert!(
        report
            .records
            .iter()
            .any(|r| r.outcome == load::Outcome::Answered(503)),
        "the gateway never skipped the stopped node"
    );
    assert!(d.gw.running(), "the gateway went down with the node");
}
