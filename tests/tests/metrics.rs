//! `/metrics` of a real `residency-gateway` and a real `region-node` (processes, so each has
//! its own recorder) after traffic: every sample is named `residency_*`, every family has a
//! `# HELP` line, every latency is a histogram with the explicit buckets (no summary), every
//! declared metric that appears has its declared type, and `residency_build_info` names the
//! component and version.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use integration_tests::directory::DirectoryDb;
use integration_tests::process::{region_toml, GatewayOptions, GatewayProcess, NodeProcess};
use integration_tests::{Http, RegionDb};
use residency_gateway::metrics::{Declared, Kind, BUILD_INFO};
use uuid::Uuid;

/// `# TYPE` of every family on the page, and the names that have a `# HELP` line.
struct Page {
    types: BTreeMap<String, String>,
    helps: Vec<String>,
    samples: Vec<String>,
    text: String,
}

fn parse(text: &str) -> Page {
    let mut page = Page {
        types: BTreeMap::new(),
        helps: Vec::new(),
        samples: Vec::new(),
        text: text.to_owned(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            page.types.insert(name.to_owned(), kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!help.trim().is_empty(), "empty help: {line}");
            page.helps.push(name.to_owned());
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            page.samples.push(line[..end].to_owned());
        }
    }
    page
}

/// The checks every binary's page passes; `must` are families that traffic must have made.
fn check(what: &str, page: &Page, declared: &[Declared], must: &[(&str, &str)]) {
    for s in &page.samples {
        assert!(
            s.starts_with("residency_"),
            "{what}: {s} has no residency_ prefix"
        );
    }
    for (name, kind) in &page.types {
        assert!(
            page.helps.contains(name),
            "{what}: {name} has no # HELP line"
        );
        assert_ne!(kind, "summary", "{what}: {name} is a summary");
        if name.ends_with("_seconds") && !name.contains("staleness") {
            assert_eq!(kind, "histogram", "{what}: latency {name} is a {kind}");
            assert!(
                page.text.contains(&format!("{name}_bucket{{"))
                    && page.text.contains("le=\"0.0001\""),
                "{what}: {name} lacks the explicit buckets"
            );
        }
        match declared.iter().find(|d| d.name == name) {
            Some(d) => {
                let want = match d.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                };
                assert_eq!(kind, want, "{what}: {name} is declared a {want}");
            }
            None => assert_eq!(name, BUILD_INFO, "{what}: {name} is not declared"),
        }
    }
    for (name, kind) in must {
        assert_eq!(
            page.types.get(*name).map(String::as_str),
            Some(*kind),
            "{what}: no {kind} {name} on the page:\n{}",
            page.text
        );
    }
}

#[tokio::test]
async fn gateway_and_node_pages_follow_the_conventions_after_traffic() {
    let (dir, db) = tokio::join!(DirectoryDb::create(), RegionDb::create("eu"));
    let node = NodeProcess::start(&db, "eu", &[]).await;
    let gw = GatewayProcess::start(&GatewayOptions {
        directory_url: &dir.reader_url,
        writer_url: &dir.writer_url,
        regions: region_toml("eu", &[node.addr()], &node.key_file()),
        limits: "",
        extra: "",
        jwks: None,
    })
    .await;
    let tenant = gw
        .create_tenant(
            &format!("m{}", &Uuid::new_v4().simple().to_string()[..8]),
            "eu",
            1000,
        )
        .await;
    for _ in 0..3 {
        assert_eq!(gw.me(&tenant).await.status, StatusCode::OK);
    }
    let http = Http::default();
    let refused = http
        .send(
            Method::GET,
            &format!("http://{}/v1/me", gw.public),
            &[("authorization", "Bearer not-a-token")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let gw_page = http
        .send(
            Method::GET,
            &format!("http://{}/metrics", gw.admin),
            &[],
            None,
        )
        .await;
    assert_eq!(gw_page.status, StatusCode::OK);
    let gw_page = parse(&gw_page.text);
    check(
        "gateway",
        &gw_page,
        residency_gateway::metrics::DECLARED,
        &[
            ("residency_gateway_requests_total", "counter"),
            ("residency_gateway_request_duration_seconds", "histogram"),
            ("residency_gateway_auth_failures_total", "counter"),
            (BUILD_INFO, "gauge"),
        ],
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        gw_page.text.contains(&format!(
            "{BUILD_INFO}{{component=\"gateway\",version=\"{version}\",git_sha=\""
        )),
        "{}",
        gw_page.text
    );
    assert!(gw_page
        .text
        .contains("residency_gateway_requests_total{region=\"eu\",status_class=\"2xx\"} 3"));

    let node_page = http
        .send(Method::GET, &format!("{}/metrics", node.base()), &[], None)
        .await;
    assert_eq!(node_page.status, StatusCode::OK);
    let node_page = parse(&node_page.text);
    check(
        "node",
        &node_page,
        residency_region_node::metrics::DECLARED,
        &[
            ("residency_node_requests_total", "counter"),
            ("residency_node_request_duration_seconds", "histogram"),
            (
                "residency_node_db_transaction_duration_seconds",
                "histogram",
            ),
            (BUILD_INFO, "gauge"),
        ],
    );
    assert!(node_page.text.contains(&format!(
        "{BUILD_INFO}{{component=\"node\",version=\"{version}\",git_sha=\""
    )));
}
