//! A whole gateway stack for end-to-end tests: a fresh directory database, real region nodes
//! for `eu` and `us` on their own databases, an `apac` region whose upstream address has
//! nothing listening (until a test starts a node there), a generated ES256 identity provider,
//! and the gateway itself (`residency_gateway::run`) with the Postgres directory (its cache
//! reads as the directory's reader role, through a freezable relay) and the admin API
//! (writing as the writer role), all on ports chosen by the OS. [`Stack::until`] polls against a deadline instead of
//! sleeping. With [`StackOptions::audit`], `apac` gets a database too and the gateway an
//! `[audit]` section naming every region's auditor role (`GET /admin/v1/audit`).

use std::time::Duration;

use crate::directory::DirectoryDb;
use crate::{Http, Node, NodeOptions, RegionDb, Response};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use residency_directory::Store;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The test identity provider's issuer.
pub const ISSUER: &str = "https://idp.admin.test/";
/// Its audience.
pub const AUDIENCE: &str = "residency-api";
/// Its key id.
pub const KID: &str = "idp-admin-1";
/// The admin token of every test gateway.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// How long a directory change may take to reach the gateway (SPEC §6).
pub const WITHIN: Duration = Duration::from_secs(1);

/// A generated ES256 identity provider.
pub struct Idp {
    key: EncodingKey,
    /// The PKCS#8 DER private key (for tools that read a PEM).
    pub pkcs8: Vec<u8>,
    jwks: String,
}

impl Idp {
    /// A new key pair.
    ///
    /// # Panics
    /// When the system RNG fails.
    #[must_use]
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Self {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    }

    /// The JWKS document with the public key.
    #[must_use]
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A token for `tenant`, valid for 10 minutes.
    ///
    /// # Panics
    /// Never with a generated key.
    #[must_use]
    pub fn token(&self, tenant: &str, sub: &str, role: &str) -> String {
        let now = residency_core::assertion::now_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tenant_id": tenant, "role": role,
            "iat": now, "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    /// A token with `extra` claims besides `iss`, `aud`, `sub`, `iat` and `exp` (10 minutes).
    ///
    /// # Panics
    /// Never with a generated key.
    #[must_use]
    pub fn token_with(&self, sub: &str, extra: &Value) -> String {
        let now = residency_core::assertion::now_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// Variations of the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackOptions {
    /// Give `apac` a database and write `[audit]` with every region's auditor URL.
    pub audit: bool,
    /// `[admin] move_batch_rows` (0: the default).
    pub move_batch_rows: u32,
    /// `[admin] move_test_hold_before_verify`: every move stops (`failed`) after its copy.
    pub move_hold_before_verify: bool,
    /// Serve the public listener over TLS ([`StackTls`]): a default certificate for
    /// [`DEFAULT_HOST`] from a test CA, and `tls.domains_dir` for custom domains.
    pub tls: bool,
    /// A `[signup]` section (TOML text) appended to the gateway config.
    pub signup: Option<&'static str>,
    /// `[directory] mode = "bounded"` with this `capacity` (0: full mode).
    pub directory_capacity: usize,
    /// `[listen] public_cores` (0: connections on the process's runtime).
    pub public_cores: usize,
}

/// The name on the default certificate of a TLS stack.
pub const DEFAULT_HOST: &str = "gateway.test";

/// The TLS side of a stack started with [`StackOptions::tls`].
pub struct StackTls {
    /// The test CA's certificate (PEM): clients trust it.
    pub ca_pem: String,
    /// The CA, to sign certificates for custom domains.
    pub ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The gateway's `tls.domains_dir`.
    pub domains_dir: std::path::PathBuf,
}

impl StackTls {
    /// Installs a certificate for `names` (signed by the test CA) as `cert_ref` under
    /// `domains_dir`, the way a mounted Secret appears (files renamed into place).
    ///
    /// # Panics
    /// When the files cannot be written.
    pub fn install_cert(&self, cert_ref: &str, names: &[&str]) {
        let (cert, key) = crate::tls_postgres::leaf(names, &self.ca, false);
        let dir = self.domains_dir.join(cert_ref);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in [("tls.key", key), ("tls.crt", cert)] {
            let tmp = dir.join(format!(".{name}.new"));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
    }
}

/// A running gateway with a Postgres directory in front of real eu and us nodes, plus an
/// `apac` region whose only upstream address has nothing listening (until a test starts a
/// node there).
pub struct Stack {
    /// The directory database.
    pub dir: DirectoryDb,
    /// A store on it as the writer role, for writes "from elsewhere" (another replica).
    pub store: Store,
    /// Region databases by id: `eu`, `us`, and `apac` with [`StackOptions::audit`].
    pub dbs: Vec<(String, RegionDb)>,
    /// The eu and us nodes.
    pub nodes: Vec<Node>,
    /// The identity provider the gateway trusts.
    pub idp: Idp,
    http: Http,
    /// Public listener base URL.
    pub public: String,
    /// Admin listener base URL.
    pub admin: String,
    /// The apac region's only upstream address (nothing listens there at first).
    pub apac_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The gateway's config directory (`jwks.json`, `admin.token`, `apac.key`).
    pub files: tempfile::TempDir,
    /// The TCP relay between the gateway and the directory database (freeze it to partition
    /// them silently).
    pub directory_link: Relay,
    /// With [`StackOptions::tls`]: the CA and the custom domains' certificate directory.
    pub tls: Option<StackTls>,
    /// The public listener's address.
    pub public_addr: std::net::SocketAddr,
}

impl Stack {
    /// Starts everything and waits until the gateway is ready.
    ///
    /// # Panics
    /// When Postgres is unreachable or something does not start.
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts everything with `opts` and waits until the gateway is ready.
    ///
    /// # Panics
    /// When Postgres is unreachable or something does not start.
    pub async fn start_with(opts: StackOptions) -> Self {
        let (dir, eu_db, us_db, directory_link) = tokio::join!(
            DirectoryDb::create(),
            RegionDb::create("eu"),
            RegionDb::create("us"),
            Relay::start(postgres_addr())
        );
        let (eu, us) = tokio::join!(
            Node::start(&eu_db, "eu", NodeOptions::default()),
            Node::start(&us_db, "us", NodeOptions::default())
        );
        let files = tempfile::tempdir().unwrap();
        let idp = Idp::generate();
        std::fs::write(files.path().join("jwks.json"), &idp.jwks).unwrap();
        std::fs::write(files.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        std::fs::write(files.path().join("apac.key"), [7u8; 32]).unwrap();
        let apac_addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let apac_db = if opts.audit {
            Some(RegionDb::create("apac").await)
        } else {
            None
        };
        let tls = opts.tls.then(|| {
            let (ca_pem, ca) = crate::tls_postgres::ca("gateway test ca");
            let (cert, key) = crate::tls_postgres::leaf(&[DEFAULT_HOST, "localhost"], &ca, false);
            std::fs::write(files.path().join("gateway.pem"), cert).unwrap();
            std::fs::write(files.path().join("gateway.key"), key).unwrap();
            let domains_dir = files.path().join("domains");
            std::fs::create_dir(&domains_dir).unwrap();
            StackTls {
                ca_pem,
                ca,
                domains_dir,
            }
        });
        let tls_section = if tls.is_some() {
            "[tls]\ncert_file = \"gateway.pem\"\nkey_file = \"gateway.key\"\n\
             reload_interval = \"100ms\"\ndomains_dir = \"domains\"\n"
        } else {
            ""
        };
        let region = |node: &Node| {
            crate::process::region_toml(
                node.region.as_str(),
                &[node.addr],
                &node.dir.path().join("assertion.key"),
            )
        };
        let config = format!(
            r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"
public_cores = {public_cores}

{tls_section}

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"

[directory]
source = "postgres"
url = "{url}"
max_stale = "10m"
negative_ttl = "5s"
timeout = "2s"
{bounded}

[admin]
token_file = "admin.token"
token_name = "test"
directory_url = "{writer_url}"
{moves}
[health_check]
interval = "300ms"
timeout = "250ms"

{eu}
{us}
[[regions]]
id = "apac"
upstreams = ["http://{apac_addr}"]
assertion = {{ kid = "apac-test", alg = "HS256", key_file = "apac.key" }}
{audit}
{signup}
"#,
            signup = opts.signup.unwrap_or_default(),
            public_cores = opts.public_cores,
            url = directory_link.url_for(&dir.reader_url),
            writer_url = dir.writer_url,
            bounded = if opts.directory_capacity > 0 {
                format!("mode = \"bounded\"\ncapacity = {}", opts.directory_capacity)
            } else {
                String::new()
            },
            moves = {
                let mut m = String::new();
                if opts.move_batch_rows > 0 {
                    m.push_str(&format!("move_batch_rows = {}\n", opts.move_batch_rows));
                }
                if opts.move_hold_before_verify {
                    m.push_str("move_test_hold_before_verify = true\n");
                }
                m
            },
            eu = region(&eu),
            us = region(&us),
            audit = apac_db.as_ref().map_or_else(String::new, |apac| {
                let mut t = "\n[audit]\ntimeout = \"30s\"\n".to_owned();
                for (id, db) in [("eu", &eu_db), ("us", &us_db), ("apac", apac)] {
                    t.push_str(&format!(
                        "[audit.regions.{id}]\ndatabase_url = \"{}\"\napp_role = \"{}\"\n",
                        db.auditor_url, db.roles[1]
                    ));
                }
                t
            }),
        );
        let path = files.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let spawned = residency_gateway::spawn_local(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = format!("{scheme}://{}", spawned.public);
        let public_addr = spawned.public;
        let admin_url = format!("http://{}", spawned.admin);
        let (shutdown, task) = (spawned.shutdown, spawned.task);
        let store = Store::connect(&dir.writer_url).await.unwrap();
        let stack = Self {
            dir,
            store,
            dbs: [("eu", Some(eu_db)), ("us", Some(us_db)), ("apac", apac_db)]
                .into_iter()
                .filter_map(|(id, db)| Some((id.to_owned(), db?)))
                .collect(),
            nodes: vec![eu, us],
            idp,
            http: Http::default(),
            public: public_url,
            admin: admin_url,
            apac_addr,
            shutdown,
            task,
            files,
            directory_link,
            tls,
            public_addr,
        };
        stack
            .until("the gateway is ready", Duration::from_secs(20), || async {
                let r = stack.ops("/readyz").await;
                (r.status == StatusCode::OK).then_some(())
            })
            .await;
        stack
    }

    /// The database of `region`.
    ///
    /// # Panics
    /// For a region without a database in this stack.
    #[must_use]
    pub fn db(&self, region: &str) -> &RegionDb {
        &self
            .dbs
            .iter()
            .find(|(r, _)| r == region)
            .unwrap_or_else(|| panic!("no database for {region}"))
            .1
    }

    /// Polls `probe` until it yields a value, failing the test after `within`.
    ///
    /// # Panics
    /// When it has not after `within`.
    pub async fn until<T, F, Fut>(&self, what: &str, within: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the admin listener's `/readyz` until its `directory.fresh` is `fresh`, failing
    /// the test with `what` after `within`.
    ///
    /// # Panics
    /// When it is not after `within`.
    pub async fn until_directory_fresh(&self, fresh: bool, what: &str, within: Duration) {
        self.until(what, within, || async {
            let r = self.ops("/readyz").await;
            (r.json["directory"]["fresh"] == fresh).then_some(())
        })
        .await;
    }

    /// Starts a silent partition from the directory ([`Relay::freeze`]: no RST, no FIN) and
    /// waits until the gateway reports the directory stale.
    ///
    /// # Panics
    /// When the gateway has not noticed within 30 s. Detection takes up to one ping interval
    /// plus the ping timeout (5 s + 5 s, `residency_directory::listen`); the rest is slack for
    /// a loaded 2-core CI machine, not a speed claim.
    pub async fn partition_directory(&self) {
        self.directory_link.freeze();
        self.until_directory_fresh(
            false,
            "the gateway notices the partition",
            Duration::from_secs(30),
        )
        .await;
    }

    /// Ends the partition ([`Relay::thaw`]) and waits until the directory is fresh again: the
    /// full load and its sweep are done.
    ///
    /// # Panics
    /// When it is not fresh within 20 s.
    pub async fn heal_directory(&self) {
        self.directory_link.thaw();
        self.until_directory_fresh(
            true,
            "the directory is fresh again",
            Duration::from_secs(20),
        )
        .await;
    }

    /// `GET` on the admin listener without a token.
    pub async fn ops(&self, path: &str) -> Response {
        self.http
            .send(Method::GET, &format!("{}{path}", self.admin), &[], None)
            .await
    }

    /// An admin call with `token` (none: no `Authorization`).
    pub async fn admin_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.http
            .send(method, &format!("{}{path}", self.admin), &headers, body)
            .await
    }

    /// An admin call with the right token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        self.admin_as(Some(ADMIN_TOKEN), method, path, body).await
    }

    /// Creates a tenant with an owner member through the admin API.
    ///
    /// # Panics
    /// When the API does not answer 201.
    pub async fn create_tenant(&self, name: &str, region: &str, tier: &str) -> Value {
        let body = json!({
            "name": name, "region": region, "tier": tier,
            "owner": { "subject": format!("owner-{name}"), "email": format!("owner@{name}.test") },
        });
        let r = self
            .admin(Method::POST, "/admin/v1/tenants", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json
    }

    /// Creates an API key with `role` for `tenant` through the admin API; returns the body
    /// (`id`, `api_key`, `prefix`, …).
    ///
    /// # Panics
    /// When the API does not answer 201.
    pub async fn create_api_key(&self, tenant: &str, name: &str, role: &str) -> Value {
        let r = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/api-keys"),
                Some(&json!({"name": name, "role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json
    }

    /// `GET` on the public listener.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.http
            .send(
                Method::GET,
                &format!("{}{path}", self.public),
                headers,
                None,
            )
            .await
    }

    /// `POST` of a JSON body on the public listener, without a credential.
    pub async fn post_public(&self, path: &str, body: &Value) -> Response {
        self.http
            .send(
                Method::POST,
                &format!("{}{path}", self.public),
                &[],
                Some(body),
            )
            .await
    }

    /// `GET /v1/me` through the gateway with a JWT for `tenant`.
    pub async fn me(&self, tenant: &str) -> Response {
        let token = self.idp.token(tenant, "user-1", "developer");
        self.get("/v1/me", &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    /// Stops the gateway (its move drivers stop with it) and starts a new one on the same
    /// configuration and directory, on new ports; waits until it is ready.
    ///
    /// # Panics
    /// When the old one does not drain or the new one does not start.
    pub async fn restart_gateway(&mut self) {
        self.shutdown.cancel();
        let old = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(15), old)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
        let spawned = residency_gateway::spawn_local(&self.files.path().join("gateway.toml"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.public = format!("http://{}", spawned.public);
        self.admin = format!("http://{}", spawned.admin);
        self.shutdown = spawned.shutdown;
        self.task = spawned.task;
        self.until(
            "the new gateway is ready",
            Duration::from_secs(20),
            || async {
                let r = self.ops("/readyz").await;
                (r.status == StatusCode::OK).then_some(())
            },
        )
        .await;
    }

    /// Stops the gateway and the nodes.
    ///
    /// # Panics
    /// When the gateway does not drain in time.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// `host:port` of the test Postgres server.
fn postgres_addr() -> String {
    let u = url::Url::parse(&crate::admin_url()).expect("admin url");
    format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432)
    )
}

/// A TCP relay that can be frozen: while frozen it keeps every connection
/// open but moves no bytes, like a silent network partition (no RST, no FIN).
pub struct Relay {
    /// Where the relay listens.
    pub addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    /// A relay to `target` (`host:port`).
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target.as_str()).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, watch.clone()), pump(sr, cw, watch));
                });
            }
        });
        Self { addr, frozen }
    }

    /// `url` (a postgres URL to the relayed server) rewritten to go through the relay.
    ///
    /// # Panics
    /// When `url` does not parse.
    #[must_use]
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }

    /// Stops moving bytes (connections stay open).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Moves bytes again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

/// Copies `from` to `to` while not frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a freeze are held back too.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
