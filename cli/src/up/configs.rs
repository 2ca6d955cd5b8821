//! Ports of the stack and the config files of its processes, written to `<dir>/config/` on
//! every run (they hold nothing that must survive: keys and passwords come from the material
//! and the state) and loaded back through the binaries' own config loaders before anything
//! starts, so a generated file that a binary would refuse fails here, with its message.
//!
//! Nodes serve HTTPS with their dev certificates and require a client certificate signed by
//! the dev CA; the gateway reaches them over mTLS (`ca_file`, `client_cert_file`), and its
//! `[audit]` section names each region's auditor role for `GET /admin/v1/audit`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use residency_config::gateway::GatewayConfig;
use residency_config::load::load;
use residency_config::node::NodeConfig;
use residency_core::RegionId;

use super::databases::Urls;
use super::material::{self, Material};
use super::UpError;

/// The audience of demo tokens.
pub(super) const AUDIENCE: &str = "residency-api";

/// Every port the stack listens on (all on 127.0.0.1).
#[derive(Debug, Clone)]
pub(super) struct Ports {
    /// Gateway, public (https).
    pub gateway: u16,
    /// Gateway admin listener.
    pub admin: u16,
    /// Dev identity provider.
    pub idp: u16,
    /// The local connector sandbox ([`super::sandbox`]).
    pub sandbox: u16,
    /// Region nodes, in `--regions` order.
    pub nodes: Vec<u16>,
}

impl Ports {
    /// Without `--base-port`: gateway 8443, admin 8480, identity provider 8400, connector
    /// sandbox 8401, nodes 8541, 8542, … With `--base-port B`: gateway B, admin B+1,
    /// identity provider B+2, nodes B+3…, the connector sandbox after the last node.
    ///
    /// # Errors
    /// [`UpError::Usage`] when the ports would pass 65535.
    pub(super) fn new(base: Option<u16>, regions: usize) -> Result<Self, UpError> {
        let overflow = || UpError::Usage("--base-port: the ports would pass 65535".into());
        let n = u16::try_from(regions).map_err(|_| overflow())?;
        match base {
            None => Ok(Self {
                gateway: 8443,
                admin: 8480,
                idp: 8400,
                sandbox: 8401,
                nodes: (0..n).map(|i| 8541 + i).collect(),
            }),
            Some(b) => {
                b.checked_add(3 + n).ok_or_else(overflow)?;
                Ok(Self {
                    gateway: b,
                    admin: b + 1,
                    idp: b + 2,
                    sandbox: b + 3 + n,
                    nodes: (0..n).map(|i| b + 3 + i).collect(),
                })
            }
        }
    }

    /// Every port with what uses it, for messages.
    #[must_use]
    pub(super) fn labelled(&self, regions: &[RegionId]) -> Vec<(u16, String)> {
        let mut out = vec![
            (self.gateway, "gateway".to_owned()),
            (self.admin, "gateway admin".to_owned()),
            (self.idp, "dev identity provider".to_owned()),
            (self.sandbox, "connector sandbox".to_owned()),
        ];
        for (r, p) in regions.iter().zip(&self.nodes) {
            out.push((*p, format!("{r} region node")));
        }
        out
    }

    /// Checks that every port can be bound on 127.0.0.1 now.
    ///
    /// # Errors
    /// [`UpError::PortInUse`] naming the first busy port and its purpose.
    pub(super) fn check_free(&self, regions: &[RegionId]) -> Result<(), UpError> {
        for (port, what) in self.labelled(regions) {
            if let Err(e) = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
                return Err(UpError::PortInUse {
                    port,
                    what,
                    error: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Quotes `s` as a TOML basic string (JSON string escapes are valid TOML escapes).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A region's display name and location for the well-known local regions.
#[must_use]
pub(super) fn describe(r: &RegionId) -> (String, String) {
    let (name, place) = match r.as_str() {
        "us" => ("United States", "Virginia, US"),
        "eu" => ("Europe", "Frankfurt, DE"),
        "apac" => ("Asia Pacific", "Singapore, SG"),
        other => (other, "local"),
    };
    (name.to_owned(), place.to_owned())
}

/// The `kid` of a region's assertion key.
#[must_use]
pub(super) fn assertion_kid(r: &RegionId) -> String {
    format!("{r}-1")
}

/// Paths of the written config files.
#[derive(Debug, Clone)]
pub(super) struct ConfigFiles {
    /// Per region: `config/<region>-node.toml`.
    pub nodes: Vec<PathBuf>,
    /// `config/gateway.toml`.
    pub gateway: PathBuf,
}

/// Writes and validates the node configs and the gateway config.
///
/// # Errors
/// [`UpError::Failed`] with the loader's message when a generated file does not validate.
pub(super) fn write(
    m: &Material,
    regions: &[RegionId],
    ports: &Ports,
    urls: &Urls,
    idp_issuer: &str,
) -> Result<ConfigFiles, UpError> {
    let cfg_dir = m.dir.join("config");
    material::private_dir(&cfg_dir)?;
    let mut nodes = Vec::new();
    for ((r, u), port) in urls.regions.iter().zip(&ports.nodes) {
        let (name, place) = describe(r);
        let text = format!(
            "# Generated by `residency up` on every run; edit the flags, not this file.\n\
             [node]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n\n\
             [region]\nid = {id}\ndisplay_name = {name}\nlocation = {place}\npeers = [{peers}]\n\n\
             [database]\nurl = {app}\nowner_url = {owner}\nauditor_role = {aud}\npool_size = 4\n\n\
             [[assertion.keys]]\nkid = {kid}\nalg = \"HS256\"\nkey_file = {akey}\n\n\
             [credentials]\nkey_file = {ckey}\n\n\
             [tls]\ncert_file = {cert}\nkey_file = {key}\nclient_ca_file = {ca}\n\n\
             # Tenant moves: this node pulls from the other regions' nodes over mTLS, with\n\
             # the dev CA's client certificate (the one the gateway presents).\n\
             [moves]\npeer_ca_file = {ca}\nclient_cert_file = {mcert}\nclient_key_file = {mkey}\n\n\
             # Workflows run here, against the local connector sandbox of `residency up`.\n\
             [worker]\nenabled = true\nconcurrency = 2\n\n{connectors}",
            connectors = super::sandbox::CONNECTORS
                .iter()
                .map(|c| format!(
                    "[connectors.{c}]\nbase_url = {}\n",
                    q(&super::sandbox::base_url(ports.sandbox, c))
                ))
                .collect::<String>(),
            mcert = q(&format!("../{}", material::GATEWAY_CLIENT_CERT)),
            mkey = q(&format!("../{}", material::GATEWAY_CLIENT_KEY)),
            id = q(r.as_str()),
            peers = regions
                .iter()
                .filter(|p| *p != r)
                .map(|p| q(p.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            name = q(&name),
            place = q(&place),
            app = q(&u.app),
            owner = q(&u.owner),
            aud = q(&u.auditor_role),
            kid = q(&assertion_kid(r)),
            akey = q(&format!("../{}", material::assertion_key(r))),
            ckey = q(&format!("../{}", material::credentials_key(r))),
            cert = q(&format!("../{}", material::node_cert(r))),
            key = q(&format!("../{}", material::node_key(r))),
            ca = q(&format!("../{}", material::CA_CERT)),
        );
        let path = cfg_dir.join(format!("{r}-node.toml"));
        material::write_private(&path, text.as_bytes())?;
        load::<NodeConfig>(&path, &Vec::new())
            .map_err(|e| UpError::Failed(anyhow::anyhow!("generated node config: {e}")))?;
        nodes.push(path);
    }
    let gateway = cfg_dir.join("gateway.toml");
    let text = gateway_toml(regions, ports, idp_issuer, urls)?;
    material::write_private(&gateway, text.as_bytes())?;
    load::<GatewayConfig>(&gateway, &Vec::new())
        .map_err(|e| UpError::Failed(anyhow::anyhow!("generated gateway config: {e}")))?;
    Ok(ConfigFiles { nodes, gateway })
}

fn gateway_toml(
    regions: &[RegionId],
    ports: &Ports,
    idp_issuer: &str,
    urls: &Urls,
) -> Result<String, UpError> {
    let mut t = format!(
        "# Generated by `residency up` on every run; edit the flags, not this file.\n\
         [listen]\npublic = \"127.0.0.1:{gw}\"\nadmin = \"127.0.0.1:{admin}\"\n\n\
         [tls]\ncert_file = {cert}\nkey_file = {key}\n\n\
         [[issuers]]\nissuer = {iss}\naudience = {aud}\njwks_url = {jwks}\nalgorithms = [\"ES256\"]\n\n",
        gw = ports.gateway,
        admin = ports.admin,
        cert = q(&format!("../{}", material::GATEWAY_CERT)),
        key = q(&format!("../{}", material::GATEWAY_KEY)),
        iss = q(idp_issuer),
        aud = q(AUDIENCE),
        jwks = q(&jwks_url(ports)),
    );
    // The directory database: cached by the gateway as the reader role, invalidated by
    // LISTEN/NOTIFY, written by the admin API (whose token is the stack's admin token) as the
    // writer role. The owner never serves.
    let _ = write!(
        t,
        "[directory]\nsource = \"postgres\"\nurl = {}\n\n\
         [admin]\ntoken_file = {}\ntoken_name = \"residency-up\"\ndirectory_url = {}\n\n",
        q(&urls.directory),
        q(&format!("../{}", material::ADMIN_TOKEN)),
        q(&urls.directory_writer),
    );
    for (r, port) in regions.iter().zip(&ports.nodes) {
        let (name, place) = describe(r);
        let _ = write!(
            t,
            "[[regions]]\nid = {id}\ndisplay_name = {name}\nlocation = {place}\n\
             upstreams = [{upstream}]\n\
             assertion = {{ kid = {kid}, alg = \"HS256\", key_file = {key} }}\n\
             ca_file = {ca}\nclient_cert_file = {ccert}\nclient_key_file = {ckey}\n\n",
            id = q(r.as_str()),
            name = q(&name),
            place = q(&place),
            upstream = q(&node_url(*port)),
            kid = q(&assertion_kid(r)),
            key = q(&format!("../{}", material::assertion_key(r))),
            ca = q(&format!("../{}", material::CA_CERT)),
            ccert = q(&format!("../{}", material::GATEWAY_CLIENT_CERT)),
            ckey = q(&format!("../{}", material::GATEWAY_CLIENT_KEY)),
        );
    }
    // GET /admin/v1/audit: the auditor role of each region (it reads tenant_id and the
    // catalog only); the app role is named, never its credentials.
    t.push_str("[audit]\ntimeout = \"60s\"\n");
    for (r, u) in &urls.regions {
        let app_role = url::Url::parse(&u.app)
            .ok()
            .map(|a| a.username().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                UpError::Failed(anyhow::anyhow!(
                    "region {r}: the app role url names no user"
                ))
            })?;
        let _ = write!(
            t,
            "[audit.regions.{id}]\ndatabase_url = {url}\napp_role = {app}\n",
            id = r.as_str(),
            url = q(&u.auditor),
            app = q(&app_role),
        );
    }
    Ok(t)
}

/// A region node's base URL (HTTPS: nodes serve TLS and require the gateway's client
/// certificate).
#[must_use]
pub(super) fn node_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// The dev identity provider's issuer (`iss`).
#[must_use]
pub(super) fn issuer(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}/", ports.idp)
}

/// The dev identity provider's JWKS URL.
#[must_use]
pub(super) fn jwks_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}/.well-known/jwks.json", ports.idp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_and_from_a_base() {
        let p = Ports::new(None, 3).unwrap();
        assert_eq!((p.gateway, p.admin, p.idp), (8443, 8480, 8400));
        assert_eq!(p.nodes, [8541, 8542, 8543]);
        let p = Ports::new(Some(20000), 3).unwrap();
        assert_eq!((p.gateway, p.admin, p.idp), (20000, 20001, 20002));
        assert_eq!(p.nodes, [20003, 20004, 20005]);
        assert_eq!(p.sandbox, 20006);
        assert!(matches!(Ports::new(Some(65530), 3), Err(UpError::Usage(_))));
    }

    #[test]
    fn a_busy_port_is_named() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let p = Ports {
            gateway: port,
            admin: 0,
            idp: 0,
            sandbox: 0,
            nodes: vec![],
        };
        match p.check_free(&[]) {
            Err(UpError::PortInUse {
                port: got, what, ..
            }) => {
                assert_eq!(got, port);
                assert_eq!(what, "gateway");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn toml_quoting_survives_odd_characters() {
        let v: toml::Table = format!("k = {}", q("a\"b\\c\nd")).parse().unwrap();
        assert_eq!(v["k"].as_str(), Some("a\"b\\c\nd"));
    }
}
