//! A throw-away Postgres cluster that accepts TLS connections only: `initdb` and `pg_ctl`
//! (run as the `postgres` user through `runuser` when the tests run as root) on a free
//! loopback port, `ssl = on`, `hostssl`-only `pg_hba.conf`, and a server certificate for
//! `localhost` from a test CA made with rcgen. [`TlsPostgres::stop`] and
//! [`TlsPostgres::resume`] take it down and up again on the same port (fault tests);
//! stopped and removed on drop.
//!
//! `postgres` logs in without a password (trust, over TLS); every other role with
//! SCRAM-SHA-256, so the roles [`crate::RegionDb`] creates authenticate as in production.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A running TLS-only cluster.
pub struct TlsPostgres {
    /// Its loopback port.
    pub port: u16,
    /// The CA that signed the server certificate (PEM).
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the server presents (PEM).
    pub other_ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from(name), |v| v.join("bin").join(name))
}

/// Runs a Postgres tool as the `postgres` user (directly when not root).
fn as_postgres(tool: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(tool));
        c
    } else {
        Command::new(bin(tool))
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A new self-signed CA named `name`: (certificate PEM, issuer for [`leaf`]).
///
/// # Panics
/// Never with rcgen's generated keys.
#[must_use]
pub fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

/// A certificate for `names` signed by `issuer`, for a server or a client: (chain PEM, key PEM).
#[must_use]
pub fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>, client: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    (
        p.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn write_owned(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    give_to_postgres(path);
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Hands `path` to the `postgres` user when running as root (the server refuses a key file
/// it does not own, and runs as `postgres`).
fn give_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {} failed", path.display());
    }
}

impl TlsPostgres {
    /// Creates and starts the cluster (a few seconds).
    ///
    /// # Panics
    /// When `initdb` or `pg_ctl` fail or are missing.
    #[must_use]
    pub fn start() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        give_to_postgres(&data);
        let data_s = data.to_str().unwrap();
        as_postgres(
            "initdb",
            &["-D", data_s, "-U", "postgres", "-A", "trust", "--no-sync"],
        );

        let (ca_pem, issuer) = ca("residency pg test CA");
        let (other_pem, _) = ca("residency unrelated CA");
        let (cert, key) = leaf(&["localhost"], &issuer, false);
        write_owned(&data.join("server.crt"), &cert, 0o644);
        write_owned(&data.join("server.key"), &key, 0o600);
        write_owned(&data.join("root.crt"), &ca_pem, 0o644);
        let ca_file = dir.path().join("ca.pem");
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        std::fs::write(&other_ca_file, &other_pem).unwrap();

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data_s}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'root.crt'\nfsync = off\nmax_connections = 50\n"
        );
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pg_conf.push_str(&conf);
        write_owned(&data.join("postgresql.conf"), &pg_conf, 0o600);
        // TLS only: no `host` line, so a clear-text TCP connection matches nothing. A role
        // named `certuser` must present a client certificate from the test CA.
        write_owned(
            &data.join("pg_hba.conf"),
            "local all postgres trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl all certuser 127.0.0.1/32 trust clientcert=verify-ca\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n",
            0o600,
        );
        write_owned(&dir.path().join("postgres.log"), "", 0o644);
        let cluster = Self {
            port,
            ca_file,
            other_ca_file,
            issuer,
            dir,
        };
        cluster.resume();
        cluster
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected, new connections
    /// refused) and waits until it is down. The data stays; [`TlsPostgres::resume`] starts
    /// it again on the same port.
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// The superuser's URL with `sslmode` and any other `params` (`k=v&…`).
    #[must_use]
    pub fn admin_url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?{params}",
            self.port
        )
    }

    /// `sslmode=verify-full&sslrootcert=<the test CA>`.
    #[must_use]
    pub fn verify_full(&self) -> String {
        format!("sslmode=verify-full&sslrootcert={}", self.ca_file.display())
    }

    /// Writes a client certificate for `user` signed by the test CA; returns (cert, key) paths.
    #[must_use]
    pub fn client_cert(&self, user: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = leaf(&[user], &self.issuer, true);
        let paths = (
            self.dir.path().join(format!("{user}.crt")),
            self.dir.path().join(format!("{user}.key")),
        );
        std::fs::write(&paths.0, cert).unwrap();
        std::fs::write(&paths.1, key).unwrap();
        paths
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::panic::catch_unwind(|| {
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        });
    }
}
