//! Soak driver for `bench/soak.sh`: a steady mixed load against a running `residency up`
//! stack, every response checked, while the driver rotates the dev IdP's signing key, changes
//! tiers, suspends and reactivates customers and revokes API keys, and samples the RSS and
//! open file descriptors of the gateway and every node.
//!
//! Usage: `soak <stack-dir> [--secs N] [--rate R] [--connections C] [--every S] [--json FILE]`
//!
//! Load: `C` keep-alive HTTPS connections to the gateway, `R` requests/s in all, cycling
//! through every demo customer (JWTs from the dev IdP's `/token` for all, plus the demo API
//! key of every scale/enterprise customer) and `GET /v1/me`, `/v1/connectors`, `/v1/usage`.
//! Every answer is checked: any 5xx, any answer from a region other than the caller's home
//! (`x-residency-region`, required on every 200), any `tenant_id` in a 200 body other than the
//! caller's, any refusal the driver did not cause, or a transport error is a failure. 429s are
//! counted apart, 403s only while the driver has that customer suspended (otherwise a failure).
//!
//! Events, every `S` seconds, in turn: signing key rotation (rotate, poll until the gateway
//! accepts a new-`kid` token, switch every JWT, retire the old key), a tier change, a suspend
//! and reactivate, an API key created, used and revoked (401 within 1 s). Every 10 s: VmRSS
//! and the number of open fds of each process in `<stack-dir>/run.json`; at the end, after a
//! 30 s warm-up, the last third's mean must be at most 10 % above the first third's (a leak
//! grows; a fall, e.g. idle connections closed, is reported but not a failure).
//!
//! Exits 1 when any check failed, 2 on a usage or setup error.

mod control;
mod load;
mod resources;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use http::Method;
use integration_tests::https::Https;
use integration_tests::Http;
use serde_json::{json, Value};
use tokio::time::Instant;

use control::Control;
use load::{worker, Customer, Shared, Tally, PATHS};
use resources::{SAMPLE_EVERY, WARM_UP};

struct Args {
    dir: PathBuf,
    secs: u64,
    rate: u32,
    connections: usize,
    every: u64,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        secs: 600,
        rate: 300,
        connections: 16,
        every: 20,
        json: None,
    };
    let mut dir = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--secs" => a.secs = value("--secs")?.parse()?,
            "--rate" => a.rate = value("--rate")?.parse()?,
            "--connections" => a.connections = value("--connections")?.parse()?,
            "--every" => a.every = value("--every")?.parse()?,
            "--json" => a.json = Some(value("--json")?.into()),
            s if s.starts_with("--") => bail!("unknown option {s}"),
            s => dir = Some(PathBuf::from(s)),
        }
    }
    a.dir = dir.context(
        "usage: soak <stack-dir> [--secs N] [--rate R] [--connections C] [--every S] [--json FILE]",
    )?;
    if a.rate == 0 || a.connections == 0 || a.every == 0 {
        bail!("--rate, --connections and --every must be positive");
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn run() -> anyhow::Result<bool> {
    let a = args()?;
    let stack_path = a.dir.join("stack.json");
    let stack: Value = serde_json::from_slice(
        &std::fs::read(&stack_path).with_context(|| format!("{}", stack_path.display()))?,
    )?;
    let s = |p: &str| -> anyhow::Result<String> {
        stack
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("stack.json: {p}"))
    };
    let gateway = s("/gateway/url")?;
    let ca = a.dir.join(s("/gateway/ca_cert")?);
    let token_url = s("/jwt/token_url")?;
    let idp = token_url
        .strip_suffix("/token")
        .context("jwt.token_url does not end in /token")?
        .to_owned();
    let mut customers = Vec::new();
    for t in stack["demo_tenants"]
        .as_array()
        .context("stack.json: demo_tenants")?
    {
        customers.push(Customer {
            id: t["id"].as_str().context("id")?.to_owned(),
            region: t["region"].as_str().context("region")?.to_owned(),
            tier: t["tier"].as_str().context("tier")?.to_owned(),
            api_key: t["api_key"].as_str().map(str::to_owned),
        });
    }
    anyhow::ensure!(!customers.is_empty(), "stack.json has no demo tenants");
    let shared = Arc::new(Shared {
        start: Instant::now(),
        customers: customers.clone(),
        creds: RwLock::new(Arc::new(Vec::new())),
        suspensions: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
        sent: AtomicU64::new(0),
    });
    let ctl = Control {
        shared: Arc::clone(&shared),
        http: Http::default(),
        https: Https::new(&ca, None),
        gateway: gateway.clone(),
        admin: s("/admin/url")?,
        admin_auth: format!("Bearer {}", s("/admin/token")?),
        idp,
        probe: customers
            .iter()
            .position(|c| c.tier != "starter")
            .context("stack.json has no customer above the starter tier")?,
    };
    // Lift the quota of every customer but the starter ones: most of the load is served, the
    // starters exercise the rate limiter (429s, counted apart).
    for c in customers.iter().filter(|c| c.tier != "starter") {
        ctl.patch(c, &json!({ "limits": { "rate_limit_per_min": 1_000_000 } }))
            .await?;
    }
    let creds = ctl.creds().await?;
    // Every credential and path answers 200 before the load starts (a setup error otherwise).
    for cred in &creds {
        for path in PATHS {
            let r = ctl
                .https
                .send(
                    Method::GET,
                    &format!("{gateway}{path}"),
                    &[("authorization", &cred.authorization)],
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                r.status == 200,
                "preflight {path} for {} answered {}: {}",
                customers[cred.customer].id,
                r.status,
                r.text
            );
        }
    }
    println!(
        "soak: {} customers, {} credentials, {} req/s on {} connections for {} s, an event every {} s",
        customers.len(),
        creds.len(),
        a.rate,
        a.connections,
        a.secs,
        a.every
    );
    *shared.creds.write().unwrap() = Arc::new(creds);

    let start = Instant::now();
    let end = start + Duration::from_secs(a.secs);
    let period = Duration::from_secs(1) * u32::try_from(a.connections)? / a.rate;
    let workers: Vec<_> = (0..a.connections)
        .map(|k| {
            tokio::spawn(worker(
                Arc::clone(&shared),
                ctl.https.clone(),
                gateway.clone(),
                k,
                period,
                end,
            ))
        })
        .collect();

    let sampler = resources::spawn_sampler(a.dir.clone(), Arc::clone(&shared), start, end);

    // Events.
    let kinds = ["rotation", "tier_change", "suspension", "revocation"];
    let mut tiers: Vec<String> = customers.iter().map(|c| c.tier.clone()).collect();
    let keyed: Vec<usize> = (0..customers.len())
        .filter(|i| customers[*i].api_key.is_some())
        .collect();
    let mut round = 0usize;
    loop {
        let at = start + Duration::from_secs(a.every * (round as u64 + 1));
        // An event must end well before the load does (a rotation can take 30 s or more).
        if at + Duration::from_secs(15) >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let n = round / kinds.len();
        let r = match kinds[round % kinds.len()] {
            "rotation" => ctl.rotate().await,
            "tier_change" => {
                ctl.tier_change((n * 5 + 1) % customers.len(), &mut tiers)
                    .await
            }
            "suspension" => ctl.suspend(keyed[(n * 5 + 2) % keyed.len()]).await,
            _ => ctl.revoke(keyed[n % keyed.len()]).await,
        };
        if let Err(e) = r {
            shared.fail(format!("{}: {e:#}", kinds[round % kinds.len()]));
        }
        round += 1;
    }

    for w in workers {
        w.await?;
    }
    let watched = sampler.await?;
    let elapsed = start.elapsed().as_secs_f64();

    let resources = resources::judge(&watched, &shared);

    let tally = shared.tally.lock().unwrap();
    let total: u64 = tally.outcomes.values().sum();
    let ok = tally.failure_count == 0;
    println!(
        "\n== soak summary ({elapsed:.0} s, {} requests sent, {total} answers and driver checks, {:.0} req/s)",
        shared.sent.load(Ordering::Relaxed),
        total as f64 / elapsed
    );
    println!("responses by outcome:");
    for (k, v) in &tally.outcomes {
        println!("  {k:<45} {v}");
    }
    println!("events:");
    for (k, v) in &tally.events {
        println!("  {k:<45} {v}");
    }
    println!("resources (sampled every {} s; flat = last third's mean at most 10 % above the first third's, after {} s):",
        SAMPLE_EVERY.as_secs(), WARM_UP.as_secs());
    for r in &resources {
        println!(
            "  {:<8} RSS {}..{} kB, fds {}..{}; {}",
            r["label"].as_str().unwrap_or(""),
            r["rss_kb"]["min"],
            r["rss_kb"]["max"],
            r["fds"]["min"],
            r["fds"]["max"],
            r["verdicts"]
        );
        println!("           series [s, rss kB, fds]: {}", r["series"]);
    }
    if ok {
        println!("soak: PASS (0 failures)");
    } else {
        println!("soak: FAIL ({} failures; first ones:)", tally.failure_count);
        for f in &tally.failures {
            println!("  {f}");
        }
    }
    if let Some(path) = &a.json {
        let out = json!({
            "passed": ok,
            "seconds": elapsed,
            "responses": total,
            "rate": total as f64 / elapsed,
            "outcomes": tally.outcomes,
            "events": tally.events,
            "event_log": tally.event_log,
            "failure_count": tally.failure_count,
            "failures": tally.failures,
            "resources": resources,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(ok)
}
