//! `deploy/`: no Docker engine or cluster runs here, so these tests check what can be checked
//! without one: every example config loads through the binaries' own loaders, the YAML
//! parses, every configured region appears in compose and in the Kubernetes overlays, only
//! the gateway can reach region nodes, no secret is committed, the Dockerfile builds every
//! binary, the build context leaves secrets out, and `residency directory bootstrap`/`migrate`
//! set up a directory the gateway can use (run against real Postgres). When `kubectl` is installed the overlays are also rendered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration_tests::admin_url;
use residency_config::gateway::GatewayConfig;
use residency_config::load::load;
use residency_config::node::NodeConfig;
use yaml_rust2::{Yaml, YamlLoader};

const REGIONS: [&str; 3] = ["us", "eu", "apac"];

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Asserts that a command exited 0; the failure names `what` and shows its stderr.
fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml(p: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Loads `file` with the real loader after moving its `/etc/residency/...` paths into a
/// temporary directory holding a dummy file for each (32 bytes for keys, an empty JWKS).
fn load_as<T>(file: &Path) -> T
where
    T: serde::de::DeserializeOwned + residency_config::load::Validate,
{
    let tmp = tempfile::tempdir().unwrap();
    let root = format!("{}/", tmp.path().display());
    let text = read(file).replace("/etc/residency/", &root);
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut paths = Vec::new();
    collect_paths(&toml::Value::Table(table), &root, &mut paths);
    for p in paths {
        let p = PathBuf::from(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body: &[u8] = if p.extension().is_some_and(|e| e == "json") {
            br#"{"keys":[]}"#
        } else {
            &[7; 32]
        };
        std::fs::write(&p, body).unwrap();
    }
    let copy = tmp.path().join(file.file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    load::<T>(&copy, &Vec::new()).unwrap_or_else(|e| panic!("{}:\n{e}", file.display()))
}

fn collect_paths(v: &toml::Value, root: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) if s.starts_with(root) => out.push(s.clone()),
        // A Postgres URL's CA file (`sslrootcert=`): the loader checks that it can be read.
        toml::Value::String(s) if s.starts_with("postgres") => out.extend(
            url::Url::parse(s)
                .into_iter()
                .flat_map(|u| {
                    u.query_pairs()
                        .map(|(_, v)| v.into_owned())
                        .collect::<Vec<_>>()
                })
                .filter(|v| v.starts_with(root)),
        ),
        toml::Value::Table(t) => t.values().for_each(|v| collect_paths(v, root, out)),
        toml::Value::Array(a) => a.iter().for_each(|v| collect_paths(v, root, out)),
        _ => {}
    }
}

fn gateway_regions(cfg: &GatewayConfig) -> BTreeSet<String> {
    cfg.regions.iter().map(|r| r.id.to_string()).collect()
}

fn all_regions() -> BTreeSet<String> {
    REGIONS.iter().map(|r| (*r).to_owned()).collect()
}

#[test]
fn example_configs_load_through_the_real_loaders() {
    let compose_gw: GatewayConfig = load_as(&deploy().join("config/gateway.toml"));
    assert_eq!(gateway_regions(&compose_gw), all_regions());
    for r in REGIONS {
        let node: NodeConfig = load_as(&deploy().join(format!("config/{r}/node.toml")));
        assert_eq!(node.region.id.as_str(), r);
        let node: NodeConfig = load_as(&deploy().join(format!("k8s/overlays/{r}/node.toml")));
        assert_eq!(node.region.id.as_str(), r);
        let gw: GatewayConfig = load_as(&deploy().join(format!("k8s/overlays/{r}/gateway.toml")));
        // Every regional gateway routes to every region, each to its own nodes only.
        assert_eq!(gateway_regions(&gw), all_regions(), "overlay {r}");
        for entry in &gw.regions {
            let id = entry.id.as_str();
            assert!(
                entry
                    .upstreams
                    .iter()
                    .all(|u| u.contains(&format!("region-node.{id}."))
                        || u.contains(&format!("region-node.residency-{id}."))),
                "overlay {r}: upstreams of {id} point elsewhere: {:?}",
                entry.upstreams
            );
        }
    }
    // No example config carries a password: they come from the environment.
    for f in [
        "config/gateway.toml",
        "config/us/node.toml",
        "k8s/overlays/eu/node.toml",
        "k8s/overlays/eu/gateway.toml",
    ] {
        let text = read(&deploy().join(f));
        for line in text.lines().filter(|l| l.contains("postgres://")) {
            let url = line.split('"').nth(1).unwrap();
            let u = url::Url::parse(url).unwrap();
            assert!(u.password().is_none(), "{f}: {url} carries a password");
        }
    }
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &compose["services"][name];
    assert!(!s.is_badvalue(), "compose.yaml has no service {name}");
    s
}

#[test]
fn compose_has_a_database_and_a_node_per_region_and_publishes_only_the_gateway() {
    let docs = yaml(&deploy().join("compose.yaml"));
    let compose = &docs[0];
    let gw: GatewayConfig = load_as(&deploy().join("config/gateway.toml"));
    for entry in &gw.regions {
        let r = entry.id.as_str();
        service(compose, &format!("postgres-{r}"));
        service(compose, &format!("init-{r}"));
        let node = service(compose, &format!("region-node-{r}"));
        assert!(
            node["ports"].is_badvalue(),
            "region-node-{r} must not publish ports"
        );
        assert_eq!(
            entry.upstreams,
            [format!("https://region-node-{r}:8080")],
            "the gateway's {r} upstream is the compose service, over TLS"
        );
        // mTLS: the region's CA and the gateway's client certificate.
        assert!(
            entry.ca_file.is_some() && entry.client_cert_file.is_some(),
            "{r}: {entry:?}"
        );
        // The node reaches its own database network and the gateway's, nothing else.
        let nets: Vec<&str> = node["networks"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(nets, [format!("db-{r}").as_str(), "nodes"]);
        assert_eq!(
            compose["networks"][format!("db-{r}").as_str()]["internal"].as_bool(),
            Some(true)
        );
    }
    service(compose, "postgres-directory");
    service(compose, "directory-init");
    let gateway = service(compose, "gateway");
    let ports: Vec<&str> = gateway["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(ports, ["8443:8443", "127.0.0.1:8480:8480"]);
    let others_publishing: Vec<&str> = compose["services"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(|(k, v)| k.as_str() != Some("gateway") && !v["ports"].is_badvalue())
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert!(
        others_publishing.is_empty(),
        "{others_publishing:?} publish ports"
    );
    // The gateway never joins a region's database network.
    let nets = format!("{:?}", gateway["networks"]);
    assert!(!nets.contains("db-"), "{nets}");
    // Every mounted file from the repository exists (secrets/ is generated).
    let text = read(&deploy().join("compose.yaml"));
    for src in text
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches("- ").strip_prefix("./"))
    {
        let src = src.split(':').next().unwrap();
        if !src.starts_with("secrets/") {
            assert!(
                deploy().join(src).exists(),
                "compose mounts missing ./{src}"
            );
        }
    }
}

#[test]
fn gen_secrets_provides_every_compose_variable_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        deploy().join("gen-secrets.sh"),
        tmp.path().join("gen-secrets.sh"),
    )
    .unwrap();
    let run = || {
        let out = Command::new("sh")
            .arg(tmp.path().join("gen-secrets.sh"))
            .output()
            .unwrap();
        succeeded(&out, "gen-secrets.sh");
    };
    run();
    let env = read(&tmp.path().join(".env"));
    run();
    assert_eq!(
        read(&tmp.path().join(".env")),
        env,
        "a second run keeps the passwords"
    );
    let defined: BTreeSet<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    let compose = read(&deploy().join("compose.yaml"));
    for var in compose.split("${").skip(1).map(|s| {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap()
    }) {
        assert!(
            defined.contains(var),
            "compose uses ${{{var}}}, gen-secrets.sh does not define it"
        );
    }
    for line in env.lines() {
        let v = line.split_once('=').unwrap().1;
        assert!(
            v.len() >= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{line}"
        );
    }
    for r in REGIONS {
        for k in ["assertion", "credentials"] {
            let len = std::fs::metadata(tmp.path().join(format!("secrets/{r}-{k}.key")))
                .unwrap()
                .len();
            assert_eq!(len, 32);
        }
    }
    for f in [
        "admin.token",
        "gateway.pem",
        "gateway.key",
        "jwks.json",
        "ca.pem",
        "ca.key",
        "gateway-client.pem",
        "gateway-client.key",
    ] {
        assert!(tmp.path().join("secrets").join(f).is_file(), "{f}");
    }
    for r in REGIONS {
        for ext in ["pem", "key"] {
            let f = format!("{r}-node.{ext}");
            assert!(tmp.path().join("secrets").join(&f).is_file(), "{f}");
        }
    }
    // Every certificate chains to the generated CA, with the names its users connect to.
    let secrets = tmp.path().join("secrets");
    let mut leaves = vec!["gateway.pem".to_owned(), "gateway-client.pem".to_owned()];
    leaves.extend(REGIONS.iter().map(|r| format!("{r}-node.pem")));
    for leaf in &leaves {
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(secrets.join("ca.pem"))
            .arg(secrets.join(leaf))
            .output()
            .unwrap();
        succeeded(&out, &format!("openssl verify {leaf}"));
    }
    for r in REGIONS {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(secrets.join(format!("{r}-node.pem")))
            .output()
            .unwrap();
        succeeded(&out, "openssl x509");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("DNS:region-node-{r}")),
            "{r}: {text}"
        );
    }
}

/// An existing deployment's self-signed gateway certificate (what earlier versions generated,
/// and what TLS clients refuse as a server certificate) is replaced by one from the CA; the
/// other secrets stay.
#[test]
fn gen_secrets_replaces_a_self_signed_gateway_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        deploy().join("gen-secrets.sh"),
        tmp.path().join("gen-secrets.sh"),
    )
    .unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(secrets.join("gateway.key"))
        .arg("-out")
        .arg(secrets.join("gateway.pem"))
        .output()
        .unwrap();
    succeeded(&out, "openssl req -x509");
    std::fs::write(secrets.join("admin.token"), "kept-token").unwrap();
    let old = read(&secrets.join("gateway.pem"));
    let out = Command::new("sh")
        .arg(tmp.path().join("gen-secrets.sh"))
        .output()
        .unwrap();
    succeeded(&out, "gen-secrets.sh");
    assert_ne!(read(&secrets.join("gateway.pem")), old, "replaced");
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(secrets.join("ca.pem"))
        .arg(secrets.join("gateway.pem"))
        .output()
        .unwrap();
    succeeded(&out, "the new gateway certificate chains to the CA");
    assert_eq!(read(&secrets.join("admin.token")), "kept-token");
}

/// The secrets end up `0600` in a `0700` folder whatever the caller's umask and whatever the
/// mode the folders had (here `0777`, with a `secrets/` folder already there, also `0777`).
#[test]
fn gen_secrets_writes_secret_files_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("deploy");
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    for d in [&root, &root.join("secrets")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::copy(deploy().join("gen-secrets.sh"), root.join("gen-secrets.sh")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec sh \"$0\"")
        .arg(root.join("gen-secrets.sh"))
        .output()
        .unwrap();
    succeeded(&out, "gen-secrets.sh with umask 000");
    assert_eq!(mode(&root.join("secrets")), 0o700, "secrets/");
    assert_eq!(mode(&root.join(".env")), 0o600, ".env");
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Per region: assertion and credentials keys, node certificate and key; then the admin
    // token, the JWKS, the CA pair, the gateway's server and client pairs.
    assert_eq!(files.len(), 4 * REGIONS.len() + 8, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}: {:o}", f.display(), mode(f));
    }
}

fn docs_in(dir: &Path) -> Vec<(PathBuf, Yaml)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            for d in yaml(&p) {
                out.push((p.clone(), d));
            }
        }
    }
    out
}

#[test]
fn kubernetes_base_and_an_overlay_per_region() {
    let base = deploy().join("k8s/base");
    let kustomization = &yaml(&base.join("kustomization.yaml"))[0];
    for r in kustomization["resources"].as_vec().unwrap() {
        assert!(base.join(r.as_str().unwrap()).is_file(), "{r:?}");
    }
    let docs = docs_in(&base);
    let kinds: Vec<(String, String)> = docs
        .iter()
        .filter_map(|(_, d)| {
            Some((
                d["kind"].as_str()?.to_owned(),
                d["metadata"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for want in [
        ("Deployment", "region-node"),
        ("Service", "region-node"),
        ("PodDisruptionBudget", "region-node"),
        ("Deployment", "gateway"),
        ("Service", "gateway"),
        ("PodDisruptionBudget", "gateway"),
        ("NetworkPolicy", "region-node-from-gateways-only"),
    ] {
        assert!(
            kinds.iter().any(|(k, n)| k == want.0 && n == want.1),
            "base lacks {want:?}"
        );
    }
    // Secrets are referenced, never committed.
    assert!(
        kinds.iter().all(|(k, _)| k != "Secret"),
        "a Secret is committed"
    );
    let text: String = docs.iter().map(|(p, _)| read(p)).collect();
    for name in [
        "region-node-db",
        "region-node-keys",
        "gateway-directory",
        "gateway-keys",
        "gateway-tls",
        "gateway-upstream-tls",
        "region-node-tls",
    ] {
        assert!(
            text.contains(&format!("Name: {name}")) || text.contains(&format!("name: {name}")),
            "{name}"
        );
    }
    // Only the gateway reaches region nodes' API port; the other rule admits the health port
    // only.
    let np = &docs
        .iter()
        .find(|(_, d)| d["metadata"]["name"].as_str() == Some("region-node-from-gateways-only"))
        .unwrap()
        .1;
    let ingress = np["spec"]["ingress"].as_vec().unwrap();
    assert_eq!(ingress.len(), 2);
    let ports = |rule: &Yaml| -> Vec<i64> {
        rule["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ports(&ingress[0]), [8080]);
    let from = ingress[0]["from"].as_vec().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
        Some("gateway")
    );
    assert_eq!(ports(&ingress[1]), [8081], "the health port only");
    for r in REGIONS {
        let dir = deploy().join(format!("k8s/overlays/{r}"));
        let k = &yaml(&dir.join("kustomization.yaml"))[0];
        assert_eq!(
            k["namespace"].as_str(),
            Some(format!("residency-{r}").as_str())
        );
        assert_eq!(k["resources"][0].as_str(), Some("../../base"));
        for g in k["configMapGenerator"].as_vec().unwrap() {
            for f in g["files"].as_vec().unwrap() {
                assert!(
                    dir.join(f.as_str().unwrap()).is_file(),
                    "overlay {r}: {f:?}"
                );
            }
        }
        // The cross-cluster rule admits address blocks only (the other regions' gateways).
        let patch = k["patches"][0]["patch"].as_str().unwrap();
        let ops = &YamlLoader::load_from_str(patch).unwrap()[0];
        for f in ops[0]["value"]["from"].as_vec().unwrap() {
            assert!(!f["ipBlock"]["cidr"].is_badvalue(), "overlay {r}: {f:?}");
        }
    }
}

#[test]
fn overlays_render_with_kubectl_when_it_is_installed() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not installed: rendering skipped (the YAML checks above still ran)");
        return;
    }
    for r in REGIONS {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(deploy().join(format!("k8s/overlays/{r}")))
            .output()
            .unwrap();
        succeeded(&out, &format!("kubectl kustomize {r}"));
        let text = String::from_utf8(out.stdout).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        assert!(docs.len() >= 9, "{r}: {} documents", docs.len());
        for d in &docs {
            assert_eq!(
                d["metadata"]["namespace"].as_str(),
                Some(format!("residency-{r}").as_str())
            );
        }
        let np = docs
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some("region-node-from-gateways-only"))
            .unwrap();
        assert_eq!(
            np["spec"]["ingress"].as_vec().unwrap().len(),
            3,
            "{r}: in-cluster, health port and cross-cluster rules"
        );
        assert!(
            text.contains(&format!("id = \"{r}\"")),
            "{r}: node.toml is in the ConfigMap"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_and_ships_every_binary() {
    let text = read(&deploy().join("Dockerfile"));
    assert!(
        text.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    for bin in ["residency-gateway", "region-node", "residency "] {
        assert!(text.contains(&format!("--bin {bin}")), "{bin}");
    }
    assert!(text.contains("USER 10001"), "runs as non-root");
    // Every set-up step is a subcommand of the shipped binaries: no psql, no scripts.
    assert!(
        !text.contains("postgresql-client"),
        "the image installs psql"
    );
    assert!(!text.contains("scripts/"), "the image ships scripts");
}

/// Whether a `.dockerignore` pattern excludes `path` (both relative to the context root):
/// `**/` matches any number of leading directories, `*` any run of characters within one
/// component, and a pattern naming a directory excludes everything under it.
fn ignored_by(pattern: &str, path: &str) -> bool {
    fn glob(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((head, tail)) => {
                s.starts_with(head) && (head.len()..=s.len()).any(|i| glob(tail, &s[i..]))
            }
        }
    }
    fn components(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => true,
            (Some(&"**"), _) => (0..=s.len()).any(|i| components(&p[1..], &s[i..])),
            (Some(pc), Some(sc)) => glob(pc, sc) && components(&p[1..], &s[1..]),
            (Some(_), None) => false,
        }
    }
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    components(&p, &s)
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out_but_not_what_the_build_copies() {
    let root = deploy().join("..");
    let text = read(&root.join(".dockerignore"));
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.iter().all(|p| !p.starts_with('!')),
        "no re-inclusions"
    );
    let excluded = |path: &str| patterns.iter().any(|p| ignored_by(p, path));
    for path in [
        "target/release/region-node",
        "cli/target/debug/x",
        ".residency/stack.json",
        "deploy/secrets/admin.token",
        "deploy/.env",
        ".git/HEAD",
        "cli/src/.main.rs.swp",
    ] {
        assert!(
            excluded(path),
            ".dockerignore lets {path} into the build context"
        );
    }
    // What the build needs: the manifests, every workspace member, every file a crate
    // includes at compile time, and what the runtime stage copies.
    let manifest: toml::Table = read(&root.join("Cargo.toml")).parse().unwrap();
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for m in manifest["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        needed.push(format!("{m}/Cargo.toml"));
        needed.push(format!("{m}/src"));
        let mut stack = vec![root.join(m).join("src")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    for arg in read(&p).split("include_").skip(1).filter_map(|s| {
                        let s = s.strip_prefix("str!(\"").or(s.strip_prefix("bytes!(\""))?;
                        s.split('"').next()
                    }) {
                        let target = p.parent().unwrap().join(arg);
                        let target = target
                            .canonicalize()
                            .unwrap_or_else(|e| panic!("{}: include of {arg}: {e}", p.display()));
                        let rel = target.strip_prefix(root.canonicalize().unwrap()).unwrap();
                        needed.push(rel.to_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    assert!(
        needed.iter().any(|n| n.starts_with("docs/")),
        "the include scan found the gateway's OpenAPI document: {needed:?}"
    );
    let dockerfile = read(&deploy().join("Dockerfile"));
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        for src in &words[1..words.len() - 1] {
            if *src != "." {
                needed.push((*src).to_owned());
            }
        }
    }
    for path in &needed {
        assert!(
            root.join(path).exists(),
            "the build needs {path}, which does not exist"
        );
        assert!(
            !excluded(path),
            ".dockerignore excludes {path}, which the build needs"
        );
    }
}

/// `residency directory bootstrap` + `migrate` (what the compose service `directory-init` and
/// the Kubernetes Job run) on a fresh server: run twice, the second run applies nothing, the
/// roles are the locked-down reader and writer, and the gateway's directory store works as
/// each of them.
#[tokio::test]
async fn directory_subcommands_set_up_a_directory_the_gateway_can_use() {
    use residency_core::{RegionId, Tier};
    use residency_directory::{NewTenant, Store};
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let db = format!("dpt_{suffix}_directory");
    let role = format!("dpt_{suffix}_owner");
    let roles = residency_directory::DirectoryRoles::beside_owner(&role);
    let admin = url::Url::parse(&admin_url()).unwrap();
    let url_as = |user: &str, password: &str| {
        let mut u = admin.clone();
        u.set_username(user).unwrap();
        u.set_password(Some(password)).unwrap();
        u.set_path(&db);
        u.to_string()
    };
    let owner = url_as(&role, "dirInitTest1234567890");
    let reader_url = url_as(&roles.reader, "dirInitReader1234567890");
    let writer_url = url_as(&roles.writer, "dirInitWriter1234567890");
    let tmp = tempfile::tempdir().unwrap();
    let writer_file = tmp.path().join("writer.password");
    std::fs::write(&writer_file, "dirInitWriter1234567890\n").unwrap();
    let run = |sub: &str| {
        let mut cmd = Command::new(integration_tests::binary("residency"));
        cmd.args(["directory", sub])
            .env("RESIDENCY_DIRECTORY_ADMIN_URL", admin.as_str())
            .env("RESIDENCY_DIRECTORY_OWNER_URL", &owner)
            // The reader's password from the env, the writer's from a file.
            .env("DIRECTORY_READER_PASSWORD", "dirInitReader1234567890")
            .env_remove("DIRECTORY_WRITER_PASSWORD");
        if sub == "bootstrap" {
            cmd.arg("--writer-password-file").arg(&writer_file);
        }
        cmd.output().expect("residency")
    };
    let runs: Vec<(&str, Output)> = ["bootstrap", "migrate", "bootstrap", "migrate"]
        .into_iter()
        .map(|sub| (sub, run(sub)))
        .collect();
    let applied = residency_directory::migrate(&owner, &roles).await;
    // The roles and grants: the reader reads, the writer inserts, neither deletes, neither is
    // privileged, every password a SCRAM verifier.
    let grants = {
        let mut in_db = admin.clone();
        in_db.set_path(&db);
        let c = integration_tests::connect(in_db.as_str()).await;
        c.query_one(
            "SELECT has_table_privilege($1, 'tenants', 'SELECT'), \
                    has_table_privilege($1, 'tenants', 'INSERT'), \
                    has_table_privilege($2, 'tenants', 'INSERT'), \
                    has_table_privilege($2, 'tenants', 'DELETE'), \
                    (SELECT bool_or(rolsuper OR rolbypassrls OR rolcreaterole) FROM pg_roles \
                      WHERE rolname IN ($1, $2)), \
                    has_database_privilege($1, current_database(), 'CONNECT'), \
                    (SELECT bool_and(rolpassword LIKE 'SCRAM-SHA-256$4096:%') FROM pg_authid \
                      WHERE rolname IN ($1, $2, $3))",
            &[&roles.reader, &roles.writer, &role],
        )
        .await
        .ok()
        .map(|r| (0..7).map(|i| r.get::<_, bool>(i)).collect::<Vec<_>>())
    };
    // The gateway's store: the admin API writes as the writer, the cache reads as the reader.
    let store = async {
        let writer = Store::connect(&writer_url).await?;
        let t = writer
            .create_tenant(
                "admin:deploy-test",
                &NewTenant {
                    org_id: None,
                    name: "deploy".into(),
                    region: RegionId::new("eu").unwrap(),
                    tier: Tier::Growth,
                    rate_limit_per_min: None,
                },
            )
            .await?;
        let reader = Store::connect(&reader_url).await?;
        let seen = reader
            .tenants()
            .await?
            .iter()
            .any(|r| r.id.as_uuid() == t.id);
        anyhow::Ok(seen)
    }
    .await;
    residency_pg::bootstrap::teardown(&admin_url(), &db, &[&role, &roles.reader, &roles.writer])
        .await
        .unwrap();
    for (sub, out) in &runs {
        succeeded(out, &format!("residency directory {sub}"));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in ["dirInitTest", "dirInitReader", "dirInitWriter"] {
            assert!(!all.contains(secret), "{sub} printed a password: {all}");
        }
    }
    let stdout = |i: usize| String::from_utf8_lossy(&runs[i].1.stdout).into_owned();
    assert!(stdout(1).contains("applied directory migration 0001_directory"));
    assert!(
        !stdout(3).contains("applied directory migration"),
        "second run applies nothing: {}",
        stdout(3)
    );
    // The Rust runner finds every migration recorded.
    assert_eq!(applied.unwrap(), Vec::<i32>::new());
    assert_eq!(
        grants,
        Some(vec![true, false, true, false, false, true, true]),
        "reader select, reader insert, writer insert, writer delete, privileged, reader connect, \
         every password stored as a SCRAM verifier"
    );
    assert!(
        store.unwrap(),
        "the reader sees the tenant the writer created"
    );
}

/// The environment of a compose service as `(name, value)` pairs (aliases resolved).
fn env_of(service: &Yaml) -> Vec<(String, String)> {
    let env = &service["environment"];
    if env.is_badvalue() {
        return Vec::new();
    }
    env.as_hash()
        .unwrap_or_else(|| panic!("environment must be a mapping: {env:?}"))
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// The `${VAR}` names a value interpolates.
fn interpolated(value: &str) -> Vec<String> {
    value
        .split("${")
        .skip(1)
        .map(|s| {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Passwords only the one-shot init services may see: the server administrator's and the
/// owners' (region owners and the directory owner).
fn is_init_only_secret(var: &str) -> bool {
    var == "PG_ADMIN_PASSWORD" || var.ends_with("_OWNER_PASSWORD") || var == "DIRECTORY_PASSWORD"
}

/// The user of a postgres URL in a compose value (interpolations kept as text).
fn url_user(value: &str) -> Option<String> {
    let rest = value.strip_prefix("postgres://")?;
    let creds = rest.split('@').next()?;
    Some(creds.split(':').next()?.to_owned())
}

#[test]
fn serving_compose_services_see_no_superuser_or_owner_credentials() {
    let compose = &yaml(&deploy().join("compose.yaml"))[0];
    let mut serving = vec!["gateway".to_owned()];
    serving.extend(REGIONS.iter().map(|r| format!("region-node-{r}")));
    for name in &serving {
        let s = service(compose, name);
        for (key, value) in env_of(s) {
            for var in interpolated(&value) {
                assert!(
                    !is_init_only_secret(&var),
                    "{name}: {key} carries ${{{var}}}, an init-only password"
                );
            }
            assert!(
                !key.contains("OWNER") && !key.contains("ADMIN_PASSWORD"),
                "{name}: {key} is an owner or administrator setting"
            );
            if let Some(user) = url_user(&value) {
                assert!(
                    user != "postgres" && !user.ends_with("_owner"),
                    "{name}: {key} connects as {user}"
                );
            }
        }
        // Owner URLs may not come in through a mounted config either.
        let mounts = format!("{:?}", s["volumes"]);
        for f in mounts.split('"').filter(|m| m.starts_with("./config/")) {
            let file = f.trim_start_matches("./").split(':').next().unwrap();
            let text = read(&deploy().join(file));
            assert!(
                !text
                    .lines()
                    .any(|l| l.trim_start().starts_with("owner_url")),
                "{name}: mounted {file} names an owner_url"
            );
        }
    }
    // The gateway reads as the directory reader and the admin API writes as the writer.
    let gw: BTreeSet<(String, Option<String>)> = env_of(service(compose, "gateway"))
        .into_iter()
        .map(|(k, v)| (k, url_user(&v)))
        .collect();
    assert!(
        gw.contains(&(
            "RESIDENCY__DIRECTORY__URL".into(),
            Some("residency_directory_reader".into())
        )),
        "gateway: {gw:?}"
    );
    assert!(
        gw.contains(&(
            "RESIDENCY__ADMIN__DIRECTORY_URL".into(),
            Some("residency_directory_writer".into())
        )),
        "gateway: {gw:?}"
    );
}

#[test]
fn compose_init_services_are_one_shot_and_serving_ones_wait_for_them() {
    let compose = &yaml(&deploy().join("compose.yaml"))[0];
    let mut pairs = vec![("gateway".to_owned(), "directory-init".to_owned())];
    for r in REGIONS {
        pairs.push((format!("region-node-{r}"), format!("init-{r}")));
        pairs.push(("gateway".to_owned(), format!("region-node-{r}")));
    }
    for (serving, init) in &pairs {
        let s = service(compose, serving);
        let cond = s["depends_on"][init.as_str()]["condition"].as_str();
        if init.starts_with("region-node-") {
            assert!(cond.is_some(), "{serving} does not depend on {init}");
            continue;
        }
        assert_eq!(
            cond,
            Some("service_completed_successfully"),
            "{serving} must wait for {init} to complete"
        );
        let i = service(compose, init);
        assert!(
            matches!(i["restart"].as_str(), None | Some("no")),
            "{init} must be one-shot"
        );
    }
    // The init services hold the administrator password; serving ones never do (above).
    for init in REGIONS
        .iter()
        .map(|r| format!("init-{r}"))
        .chain(["directory-init".to_owned()])
    {
        let vars: Vec<String> = env_of(service(compose, &init))
            .iter()
            .flat_map(|(_, v)| interpolated(v))
            .collect();
        assert!(vars.iter().any(|v| v == "PG_ADMIN_PASSWORD"), "{init}");
    }
    // The directory init runs the CLI's subcommands (no script, no psql in the image).
    let command = format!("{:?}", service(compose, "directory-init")["command"]);
    for want in [
        "residency directory bootstrap",
        "residency directory migrate",
    ] {
        assert!(command.contains(want), "directory-init: {command}");
    }
    // The directory init creates the reader and writer roles with their passwords.
    let dir_vars: Vec<String> = env_of(service(compose, "directory-init"))
        .iter()
        .flat_map(|(_, v)| interpolated(v))
        .collect();
    for want in ["DIRECTORY_READER_PASSWORD", "DIRECTORY_WRITER_PASSWORD"] {
        assert!(
            dir_vars.iter().any(|v| v == want),
            "directory-init lacks {want}"
        );
    }
}

/// Every `(secret name, key)` a container's env and volumes reference.
fn secret_refs(container: &Yaml, pod: &Yaml) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in container["env"].as_vec().into_iter().flatten() {
        let r = &e["valueFrom"]["secretKeyRef"];
        if !r.is_badvalue() {
            out.push((
                r["name"].as_str().unwrap().to_owned(),
                r["key"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for ef in container["envFrom"].as_vec().into_iter().flatten() {
        if let Some(n) = ef["secretRef"]["name"].as_str() {
            out.push((n.to_owned(), "*".to_owned()));
        }
    }
    for v in pod["volumes"].as_vec().into_iter().flatten() {
        if let Some(n) = v["secret"]["secretName"].as_str() {
            out.push((n.to_owned(), "*".to_owned()));
        }
    }
    out
}

#[test]
fn serving_kubernetes_deployments_mount_only_app_reader_and_writer_secrets() {
    let base = deploy().join("k8s/base");
    let docs = docs_in(&base);
    let find = |kind: &str, name: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("base lacks {kind} {name}"))
    };
    let allowed: &[(&str, &[(&str, &str)])] = &[
        (
            "region-node",
            &[
                ("region-node-db", "url"),
                ("region-node-keys", "*"),
                ("region-node-tls", "*"),
            ],
        ),
        (
            "gateway",
            &[
                ("gateway-directory", "reader_url"),
                ("gateway-directory", "writer_url"),
                ("gateway-keys", "*"),
                ("gateway-tls", "*"),
                ("gateway-upstream-tls", "*"),
            ],
        ),
    ];
    for (name, allowed) in allowed {
        let d = find("Deployment", name);
        let pod = &d["spec"]["template"]["spec"];
        assert!(
            pod["initContainers"].is_badvalue(),
            "{name}: init runs as a Job"
        );
        for c in pod["containers"].as_vec().unwrap() {
            for (secret, key) in secret_refs(c, pod) {
                assert!(
                    allowed.contains(&(secret.as_str(), key.as_str())),
                    "{name} reads secret {secret} key {key}"
                );
            }
            for e in c["env"].as_vec().into_iter().flatten() {
                let n = e["name"].as_str().unwrap();
                assert!(!n.contains("OWNER"), "{name}: env {n}");
            }
        }
    }
    // The init Job holds the administrator and owner credentials, in its own Secret.
    let job = find("Job", "region-node-init");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("OnFailure"));
    let refs: Vec<(String, String)> = pod["containers"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|c| secret_refs(c, pod))
        .collect();
    assert!(
        refs.iter()
            .any(|(s, k)| s == "region-node-db-init" && k == "owner_url"),
        "{refs:?}"
    );
    // The directory's Job: the CLI's subcommands, with the directory's administrator and
    // owner credentials from its own Secret, and listed in the kustomization.
    let kustomization = read(&base.join("kustomization.yaml"));
    assert!(kustomization.contains("- directory-init.yaml"));
    let job = find("Job", "directory-init");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("OnFailure"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let command = format!("{:?}", container["command"]);
    for want in [
        "residency directory bootstrap",
        "residency directory migrate",
    ] {
        assert!(command.contains(want), "directory-init Job: {command}");
    }
    let mut refs = secret_refs(container, pod);
    refs.sort();
    let want: Vec<(String, String)> = [
        "admin_url",
        "owner_url",
        "reader_password",
        "writer_password",
    ]
    .iter()
    .map(|k| ("directory-init".to_owned(), (*k).to_owned()))
    .collect();
    assert_eq!(refs, want);
    // No serving node config names an owner URL.
    for r in REGIONS {
        let text = read(&deploy().join(format!("k8s/overlays/{r}/node.toml")));
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("owner_url")),
            "overlay {r}: node.toml names an owner_url"
        );
        let gw: toml::Table = read(&deploy().join(format!("k8s/overlays/{r}/gateway.toml")))
            .parse()
            .unwrap();
        let writer = gw["admin"].get("directory_url").and_then(|u| u.as_str());
        assert!(
            writer.is_some_and(|u| u.contains("residency_directory_writer@")),
            "overlay {r}: admin.directory_url is the writer: {writer:?}"
        );
    }
}

/// `(mountPath, subPath)` of every volume mount of a container.
fn mounts(container: &Yaml) -> Vec<(String, Option<String>)> {
    container["volumeMounts"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["subPath"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Whether `path` is inside one of `mounts` (a directory mount, or a file mounted with
/// `subPath` at exactly that path).
fn is_mounted(path: &str, mounts: &[(String, Option<String>)]) -> bool {
    mounts.iter().any(|(at, sub)| match sub {
        Some(_) => path == at,
        None => path.starts_with(&format!("{}/", at.trim_end_matches('/'))),
    })
}

/// The volume of `pod` mounted at the directory holding `path`: its `secret.secretName`.
fn secret_behind(path: &str, container: &Yaml, pod: &Yaml) -> Option<String> {
    let m = container["volumeMounts"].as_vec()?.iter().find(|m| {
        m["subPath"].is_badvalue()
            && path.starts_with(&format!(
                "{}/",
                m["mountPath"].as_str().unwrap().trim_end_matches('/')
            ))
    })?;
    let name = m["name"].as_str()?;
    let v = pod["volumes"]
        .as_vec()?
        .iter()
        .find(|v| v["name"].as_str() == Some(name))?;
    v["secret"]["secretName"].as_str().map(str::to_owned)
}

/// Every `/etc/residency/…` file a config names (keys, certificates, `sslrootcert=`).
fn config_paths(file: &Path) -> Vec<String> {
    let table: toml::Table = read(file).parse().unwrap();
    let mut out = Vec::new();
    collect_paths(&toml::Value::Table(table), "/etc/residency/", &mut out);
    out
}

/// The production transport: the gateway reaches every region's nodes over https with that
/// region's CA and its own client certificate (cert-manager `kubernetes.io/tls` Secrets:
/// `tls.crt`, `tls.key`, `ca.crt`); nodes serve TLS and require it; kubelet probes use the
/// node's plain health port, which serves nothing else; every file a config names is
/// mounted into every pod that loads that config (the Deployments and the init Job).
#[test]
fn kubernetes_overlays_use_mtls_to_nodes_and_probe_the_health_port() {
    let base = deploy().join("k8s/base");
    let docs = docs_in(&base);
    let find = |kind: &str, name: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("base lacks {kind} {name}"))
    };
    let node_pod = &find("Deployment", "region-node")["spec"]["template"]["spec"];
    let node = &node_pod["containers"][0];
    let gw_pod = &find("Deployment", "gateway")["spec"]["template"]["spec"];
    let gw = &gw_pod["containers"][0];
    let init_pod = &find("Job", "region-node-init")["spec"]["template"]["spec"];
    let init = &init_pod["containers"][0];
    let port_of = |c: &Yaml, name: &str| {
        c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no port named {name}"))
    };
    for r in REGIONS {
        let dir = deploy().join(format!("k8s/overlays/{r}"));
        let cfg: NodeConfig = load_as(&dir.join("node.toml"));
        let tls = cfg.tls.as_ref().expect("the node serves TLS");
        assert!(tls.client_ca_file.is_some(), "{r}: the node requires mTLS");
        let health = cfg.node.health.expect("a health listener for the probes");
        assert_ne!(health.port(), cfg.node.listen.port(), "{r}");
        for probe in ["readinessProbe", "livenessProbe"] {
            let p = &node[probe]["httpGet"];
            let port = match &p["port"] {
                Yaml::String(name) => port_of(node, name),
                Yaml::Integer(n) => *n,
                other => panic!("{probe}: port {other:?}"),
            };
            assert_eq!(
                port,
                i64::from(health.port()),
                "{r}: {probe} probes the health port"
            );
            assert!(
                matches!(p["scheme"].as_str(), None | Some("HTTP")),
                "{r}: {probe}"
            );
        }
        assert_eq!(port_of(node, "https"), i64::from(cfg.node.listen.port()));
        // Server certificate and client CA come from the node's TLS Secret.
        let text = read(&dir.join("node.toml"));
        let node_toml: toml::Table = text.parse().unwrap();
        let t = &node_toml["tls"];
        let cert = t["cert_file"].as_str().unwrap();
        assert!(cert.ends_with("/tls.crt"), "{r}: {cert}");
        assert!(t["key_file"].as_str().unwrap().ends_with("/tls.key"), "{r}");
        assert!(
            t["client_ca_file"].as_str().unwrap().ends_with("/ca.crt"),
            "{r}"
        );
        assert_eq!(
            secret_behind(cert, node, node_pod).as_deref(),
            Some("region-node-tls"),
            "{r}: the node's certificate"
        );
        for path in config_paths(&dir.join("node.toml")) {
            assert!(
                is_mounted(&path, &mounts(node)),
                "{r}: node: {path} is not mounted"
            );
            assert!(
                is_mounted(&path, &mounts(init)),
                "{r}: init Job: {path} is not mounted"
            );
        }

        let gw_cfg: GatewayConfig = load_as(&dir.join("gateway.toml"));
        let gw_toml: toml::Table = read(&dir.join("gateway.toml")).parse().unwrap();
        for (i, entry) in gw_cfg.regions.iter().enumerate() {
            let id = entry.id.as_str();
            assert!(
                entry.uses_tls(),
                "overlay {r}: {id} upstreams are not https"
            );
            let raw = &gw_toml["regions"][i];
            let ca = raw["ca_file"].as_str().expect("ca_file");
            let cert = raw["client_cert_file"].as_str().expect("client_cert_file");
            let key = raw["client_key_file"].as_str().expect("client_key_file");
            assert!(ca.ends_with("ca.crt"), "overlay {r}: {id}: {ca}");
            assert!(
                cert.ends_with("/tls.crt") && key.ends_with("/tls.key"),
                "{r}: {id}"
            );
            assert_eq!(
                secret_behind(cert, gw, gw_pod).as_deref(),
                Some("gateway-upstream-tls"),
                "overlay {r}: {id}: the gateway's client certificate"
            );
        }
        for path in config_paths(&dir.join("gateway.toml")) {
            assert!(
                is_mounted(&path, &mounts(gw)),
                "{r}: gateway: {path} is not mounted"
            );
        }
    }
}
