//! `listen.public_cores`: the public listener's connections served by per-core runtimes. Every
//! answer is right (tenant and home region from the credential, refusals unchanged) while
//! connections and the upstream pools are spread over the cores, the cores really serve them
//! (each core thread spent CPU), and the cores end with the gateway.

use std::time::Duration;

use http::StatusCode;
use integration_tests::gateway::{Stack, StackOptions};

/// CPU time (user + system, in clock ticks) of each thread of this process named `rg-core-*`.
fn core_threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let name = comm.trim();
        if !name.starts_with("rg-core-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out.push((name.to_owned(), ticks));
    }
    out.sort();
    out
}

#[tokio::test]
async fn connections_served_by_per_core_runtimes_answer_as_before() {
    let stack = Stack::start_with(StackOptions {
        public_cores: 2,
        ..StackOptions::default()
    })
    .await;
    let eu = stack.create_tenant("cores-eu", "eu", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let us = stack.create_tenant("cores-us", "us", "scale").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let names: Vec<String> = core_threads().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["rg-core-0", "rg-core-1"], "{names:?}");

    // Eight clients at once (so several connections, spread over both cores and sharing the
    // upstream pools), each alternating the two tenants.
    let clients = (0..8).map(|c| {
        let (stack, eu, us) = (&stack, &eu, &us);
        async move {
            for i in 0..60 {
                let (tenant, region) = if (c + i) % 2 == 0 {
                    (eu, "eu")
                } else {
                    (us, "us")
                };
                let r = stack.me(tenant).await;
                assert_eq!(r.status, StatusCode::OK, "client {c} request {i}: {r:?}");
                assert_eq!(r.json["tenant_id"], tenant.as_str(), "{r:?}");
                assert_eq!(r.json["region"], region, "{r:?}");
            }
        }
    });
    futures_util::future::join_all(clients).await;
    // Refusals are unchanged: no credential, a forged one.
    let r = stack.get("/v1/me", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = stack
        .get("/v1/me", &[("authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // Both cores served connections: each spent CPU (connections served on the process's
    // runtime would leave them idle, near zero ticks).
    for (name, ticks) in core_threads() {
        assert!(ticks >= 1, "{name} spent no CPU: it served nothing");
    }

    stack.stop().await;
    // The cores end with the gateway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !core_threads().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "core threads outlived the gateway: {:?}",
            core_threads()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
