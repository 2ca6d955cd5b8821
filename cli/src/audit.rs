//! `residency audit`: reads the regions and the directory from a local stack's `stack.json`
//! (default `.residency/stack.json`) or a deployment's `audit.toml`, runs
//! [`residency_audit::run_audit`], and prints the report as a table (default) or JSON, with an
//! optional HTML page. Progress goes to stderr, the report to stdout. When the stack names a
//! running gateway, routing evidence (requests per region, refused misroutes, reachable
//! upstreams) is read from the gateway's and nodes' `/metrics` first, best effort.
//!
//! Exit codes: 0 clean, 1 violations found, 2 could not run (bad input, directory or a region
//! database unreachable), always with the reason on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use residency_audit::sources::{self, DirectorySpec, GatewayAccess, Loaded};
use residency_audit::{render, routing, AuditInput, Outcome, Progress, RoutingEvidence};
use residency_config::load::ProcessEnv;
use residency_core::TenantEntry;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the local stack writes its description (SPEC §4).
const DEFAULT_STACK: &str = ".residency/stack.json";

/// Arguments of `residency audit`.
#[derive(clap::Args, Debug)]
pub(crate) struct AuditArgs {
    /// The local stack's stack.json (default: .residency/stack.json). Per region the auditor
    /// URL is `auditor_database_url`, else `database_url`.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    stack: Option<PathBuf>,
    /// A deployment's audit.toml: regions with auditor URLs, and the directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read the directory's tenants from this TOML directory file instead of the directory
    /// named by the stack or config.
    #[arg(long, value_name = "FILE")]
    directory_file: Option<PathBuf>,
    /// Print the report as JSON (schema version 1) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// The longest one region's scan may take (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = residency_config::duration::parse)]
    region_timeout: Duration,
}

/// Runs the audit and returns the exit code.
pub(crate) async fn run(args: AuditArgs) -> ExitCode {
    let (input, gateway) = match input(&args).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("residency audit: could not run: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = args.quiet;
    let progress = move |p: Progress<'_>| {
        if !quiet {
            print_progress(p);
        }
    };
    let mut input = input;
    if let Some(gateway) = &gateway {
        collect_routing(&mut input, gateway, quiet).await;
    }
    let report = residency_audit::run_audit(&input, &progress).await;
    let rendered = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("residency audit: could not run: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        render::text::render(&report)
    };
    println!("{rendered}");
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, render::html::render(&report)) {
            eprintln!(
                "residency audit: could not run: cannot write {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
        if !quiet {
            eprintln!("audit: wrote {}", path.display());
        }
    }
    let outcome = report.outcome();
    match &outcome {
        Outcome::Clean => {
            if !quiet {
                eprintln!("audit: clean");
            }
        }
        Outcome::Violations(n) => eprintln!("residency audit: {n} violation(s) found"),
        Outcome::Incomplete(failed) => {
            for (region, why) in failed {
                eprintln!("residency audit: could not run: region {region}: {why}");
            }
        }
    }
    ExitCode::from(outcome.exit_code())
}

async fn input(args: &AuditArgs) -> Result<(AuditInput, Option<GatewayAccess>), String> {
    let loaded: Loaded = match (&args.config, &args.stack) {
        (Some(config), _) => {
            sources::load_audit_config(config, &ProcessEnv).map_err(|e| e.to_string())?
        }
        (None, Some(stack)) => sources::load_stack(stack).map_err(|e| e.to_string())?,
        (None, None) => {
            let stack = Path::new(DEFAULT_STACK);
            if !stack.exists() {
                return Err(format!(
                    "no {DEFAULT_STACK} here: start the local stack with `residency up`, or pass --stack FILE or --config audit.toml"
                ));
            }
            sources::load_stack(stack).map_err(|e| e.to_string())?
        }
    };
    for region in &loaded.owner_fallback {
        eprintln!(
            "audit: warning: region {region} has no auditor_database_url; auditing as the owner role of database_url, which FORCE RLS blinds"
        );
    }
    let directory = match &args.directory_file {
        Some(path) => DirectorySpec::File(path.clone()),
        None => loaded.directory.clone().ok_or_else(|| {
            "no directory: the file names none; pass --directory-file directory.toml".to_owned()
        })?,
    };
    let (tenants, moves) = read_directory(&directory).await?;
    let mut input = AuditInput::new(loaded.regions, tenants);
    input.moves = moves;
    input.region_timeout = args.region_timeout;
    Ok((input, loaded.gateway))
}

/// The directory's tenants and, for a Postgres directory, its tenant moves in flight (rows in
/// a moving tenant's two regions are expected while it copies, verifies or purges; a file
/// directory has no moves).
async fn read_directory(
    spec: &DirectorySpec,
) -> Result<(Vec<TenantEntry>, Vec<residency_audit::MoveInFlight>), String> {
    match spec {
        DirectorySpec::File(path) => sources::load_directory_file(path)
            .map(|t| (t, Vec::new()))
            .map_err(|e| e.to_string()),
        DirectorySpec::Postgres(url) => {
            let place = residency_audit::describe_database(url);
            let store = residency_directory::Store::connect(url)
                .await
                .map_err(|e| format!("directory at {place}: {e}"))?;
            let tenants = store
                .tenants()
                .await
                .map_err(|e| format!("cannot read the directory at {place}: {e}"))?;
            let moves = store
                .moves_in_flight()
                .await
                .map_err(|e| format!("cannot read the moves in the directory at {place}: {e}"))?
                .into_iter()
                .filter_map(|m| {
                    residency_audit::MoveInFlight::from_record(
                        residency_core::TenantId::from_uuid(m.tenant_id),
                        &m.from,
                        &m.to,
                        m.phase,
                    )
                })
                .collect();
            Ok((tenants, moves))
        }
    }
}

fn print_progress(p: Progress<'_>) {
    match p {
        Progress::Connecting { region, database } => {
            eprintln!("audit: {region}: connecting to {database}");
        }
        Progress::TableCounted {
            region,
            table,
            rows,
            tenants,
            elapsed,
            done,
            of,
        } => eprintln!(
            "audit: {region}: [{done}/{of}] {table}: {rows} rows, {tenants} tenants ({} ms)",
            elapsed.as_millis()
        ),
        Progress::RegionDone { region, elapsed } => {
            eprintln!("audit: {region}: scanned in {} ms", elapsed.as_millis());
        }
        Progress::RegionFailed { region, error } => {
            eprintln!("audit: {region}: could not audit: {error}");
        }
    }
}

/// How long one routing-evidence request may take: evidence is best effort and must not hold
/// up the audit.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest metrics page read.
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Fills each region's routing evidence from the running stack: requests per region from the
/// gateway's `/metrics` (admin listener), refused misroutes and reachability from each node's
/// `/metrics`. Anything unreachable leaves its figure out and says so in `source`.
async fn collect_routing(input: &mut AuditInput, gateway: &GatewayAccess, quiet: bool) {
    let tls = gateway
        .ca_cert
        .as_deref()
        .and_then(|ca| match tls_config(ca) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("audit: routing evidence: {e}");
                None
            }
        });
    // The nodes of a local stack serve mTLS: call them with the stack's client certificate.
    let node_tls = match &gateway.node_tls {
        Some(files) => match node_tls_config(files) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("audit: routing evidence: {e}");
                None
            }
        },
        None => tls.clone(),
    };
    let metrics_url = format!("{}/metrics", gateway.admin_url.trim_end_matches('/'));
    let page = http_get(&metrics_url, Some(&gateway.admin_token), tls.as_ref()).await;
    let requests = match &page {
        Ok(text) => Some(routing::sum_by_label(
            text,
            routing::GATEWAY_REQUESTS,
            "region",
        )),
        Err(e) => {
            if !quiet {
                eprintln!("audit: routing evidence: gateway metrics at {metrics_url}: {e}");
            }
            None
        }
    };
    for region in &mut input.regions {
        let mut misroutes: Option<u64> = None;
        let mut reachable = 0usize;
        let mut notes = vec![match &requests {
            Some(_) => format!("requests from {metrics_url}"),
            None => "gateway metrics unreachable".to_owned(),
        }];
        for upstream in &region.upstreams {
            let url = format!("{}/metrics", upstream.trim_end_matches('/'));
            match http_get(&url, None, node_tls.as_ref()).await {
                Ok(text) => {
                    reachable += 1;
                    let n = routing::sum(&text, routing::NODE_MISROUTES).unwrap_or(0);
                    misroutes = Some(misroutes.unwrap_or(0) + n);
                }
                Err(e) => notes.push(format!("{url}: {e}")),
            }
        }
        region.routing = Some(RoutingEvidence {
            requests_total: requests
                .as_ref()
                .map(|m| m.get(region.id.as_str()).copied().unwrap_or(0)),
            misroutes_refused: misroutes,
            upstreams_reachable: Some(reachable),
            source: notes.join("; "),
        });
    }
}

/// Trust the nodes' CA and present the client certificate they require.
fn node_tls_config(
    files: &residency_audit::sources::NodeTlsFiles,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = roots(&files.ca_cert)?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let chain = CertificateDer::pem_slice_iter(&read(&files.client_cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.client_cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.client_key)?).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{}: no private key", files.client_key.display()),
        e => format!("{}: {e}", files.client_key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("{}: {e}", files.client_cert.display()))?;
    Ok(Arc::new(config))
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}

fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = roots(ca)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A bounded GET over HTTP/1.1 (TLS for `https` with the stack's CA), body as text.
async fn http_get(
    url: &str,
    bearer: Option<&str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<String, String> {
    tokio::time::timeout(HTTP_TIMEOUT, http_get_inner(url, bearer, tls))
        .await
        .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))?
}

async fn http_get_inner(
    url: &str,
    bearer: Option<&str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::rt::TokioIo;

    let uri: http::Uri = url.parse().map_err(|e| format!("invalid url: {e}"))?;
    let host = uri.host().ok_or("url has no host")?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = http::Request::get(path).header(http::header::HOST, format!("{host}:{port}"));
    if let Some(token) = bearer.filter(|t| !t.is_empty()) {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if https {
        let config = tls.ok_or("https upstream but the stack names no CA certificate")?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("bad server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn send<T>(
    io: T,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // The connection task ends with the response; its own error shows up on the request.
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}
