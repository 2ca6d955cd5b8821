//! Dev key material under the stack directory: generated on the first run, reused on every
//! later one, so restarting the stack keeps tokens, API keys and trusted certificates valid.
//!
//! ```text
//! tls/ca.pem, tls/ca.key                 dev CA (trust ca.pem to call the gateway over https)
//! tls/gateway.pem, tls/gateway.key       gateway server certificate (127.0.0.1, ::1, localhost)
//! tls/<region>-node.pem, .key            region node server certificates
//! tls/gateway-client.pem, .key           the gateway's client certificate towards the nodes (mTLS)
//! keys/jwt.pem                           ES256 signing key of the dev identity provider (PKCS#8)
//! keys/<region>-assertion.key            32 raw bytes: HS256 secret of the region's assertion
//! keys/<region>-credentials.key          32 raw bytes: AES-256-GCM key for connection secrets
//! keys/admin.token                       bearer token of the gateway's admin API
//! ```
//!
//! Every secret file is created `0600` inside `0700` directories. Nothing here is ever
//! printed. The nodes serve HTTPS with their certificates and require a client certificate
//! signed by the dev CA (mTLS); the gateway presents `gateway-client.pem`. The client
//! certificate is issued from the existing CA when it is missing (a stack created before it
//! existed keeps its CA, so `ca.pem` stays trusted).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use residency_core::RegionId;

/// Length of generated passwords and tokens, in `[A-Za-z0-9]` characters (~190 bits).
pub(super) const SECRET_CHARS: usize = 32;

/// Paths of the material, all inside the stack directory.
#[derive(Debug, Clone)]
pub(super) struct Material {
    /// The stack directory (absolute).
    pub dir: PathBuf,
    /// The `kid` of the JWT signing key (derived from its public key, so stable).
    pub jwt_kid: String,
    /// The admin API token.
    pub admin_token: String,
}

/// Relative path (from the stack directory) of a region's assertion key.
#[must_use]
pub(super) fn assertion_key(region: &RegionId) -> String {
    format!("keys/{region}-assertion.key")
}

/// Relative path of a region's credentials key.
#[must_use]
pub(super) fn credentials_key(region: &RegionId) -> String {
    format!("keys/{region}-credentials.key")
}

/// Relative path of the JWT signing key.
pub(super) const JWT_KEY: &str = "keys/jwt.pem";
/// Relative path of the CA certificate.
pub(super) const CA_CERT: &str = "tls/ca.pem";
/// Relative path of the gateway certificate chain.
pub(super) const GATEWAY_CERT: &str = "tls/gateway.pem";
/// Relative path of the gateway private key.
pub(super) const GATEWAY_KEY: &str = "tls/gateway.key";
/// Relative path of the gateway's client certificate chain towards the nodes (mTLS).
pub(super) const GATEWAY_CLIENT_CERT: &str = "tls/gateway-client.pem";
/// Relative path of its private key.
pub(super) const GATEWAY_CLIENT_KEY: &str = "tls/gateway-client.key";
/// Relative path of the CA's private key.
const CA_KEY: &str = "tls/ca.key";

/// Relative path of a region node's certificate chain.
#[must_use]
pub(super) fn node_cert(region: &RegionId) -> String {
    format!("tls/{region}-node.pem")
}

/// Relative path of a region node's private key.
#[must_use]
pub(super) fn node_key(region: &RegionId) -> String {
    format!("tls/{region}-node.key")
}

/// Relative path of the admin token.
pub(super) const ADMIN_TOKEN: &str = "keys/admin.token";

/// `n` random characters of `[A-Za-z0-9]`, from the system CSPRNG.
///
/// # Errors
/// When the system random source fails.
pub(super) fn random_alnum(n: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| anyhow::anyhow!("system random failed"))?;
        // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b % 62)]));
        }
    }
    Ok(out)
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| anyhow::anyhow!("system random failed"))?;
    Ok(buf)
}

/// Creates `dir` (and parents) with mode `0700` when missing.
///
/// # Errors
/// File system errors.
pub(super) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to `path` with mode `0600`, replacing the file atomically.
///
/// # Errors
/// File system errors.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads `rel` under `dir`, or creates it with `make` when it does not exist.
fn ensure_file(
    dir: &Path,
    rel: &str,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make()?;
            write_private(&path, &bytes)?;
            Ok(bytes)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Makes sure every piece of material exists under `dir`, generating only what is missing.
///
/// # Errors
/// File system or key generation errors, or an existing file that is not what it should be.
pub(super) fn ensure(dir: &Path, regions: &[RegionId]) -> anyhow::Result<Material> {
    private_dir(&dir.join("keys"))?;
    private_dir(&dir.join("tls"))?;
    for r in regions {
        for rel in [assertion_key(r), credentials_key(r)] {
            let bytes = ensure_file(dir, &rel, || Ok(random_bytes::<32>()?.to_vec()))?;
            anyhow::ensure!(
                bytes.len() == 32,
                "{} must hold 32 bytes; delete it (or use --fresh) to regenerate",
                dir.join(&rel).display()
            );
        }
    }
    let admin_token = ensure_file(dir, ADMIN_TOKEN, || {
        Ok(random_alnum(SECRET_CHARS)?.into_bytes())
    })?;
    let admin_token = String::from_utf8(admin_token)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| t.len() >= 16)
        .with_context(|| format!("{} is not a usable token", dir.join(ADMIN_TOKEN).display()))?;
    let jwt_pem = ensure_file(dir, JWT_KEY, || {
        Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?
            .serialize_pem()
            .into_bytes())
    })?;
    let jwt = KeyPair::from_pem(&String::from_utf8_lossy(&jwt_pem))
        .with_context(|| format!("{} is not a PKCS#8 key", dir.join(JWT_KEY).display()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwt.public_key_raw());
    let jwt_kid = format!("dev-{}", &hex::encode(digest.as_ref())[..12]);
    ensure_tls(dir, regions)?;
    Ok(Material {
        dir: dir.to_path_buf(),
        jwt_kid,
        admin_token,
    })
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Residency Gateway local dev CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// A client-only certificate (no server names): what the gateway presents to the nodes.
fn client_leaf(name: &str, issuer: &Issuer<'_, KeyPair>) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes the gateway's client certificate (chain: leaf, then the CA) issued by `issuer`.
fn write_client(dir: &Path, issuer: &Issuer<'_, KeyPair>, ca_pem: &str) -> anyhow::Result<()> {
    let (cert, key) = client_leaf("residency-gateway client", issuer)?;
    write_private(&dir.join(GATEWAY_CLIENT_KEY), key.as_bytes())?;
    write_private(
        &dir.join(GATEWAY_CLIENT_CERT),
        format!("{cert}{ca_pem}").as_bytes(),
    )
}

fn leaf(
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    client_auth: bool,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if client_auth {
        // Lets the same certificate authenticate the gateway to nodes under mTLS.
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The TLS files are generated together: a leaf is only useful with the CA that signed it,
/// so when any file is missing, all are regenerated (and ca.pem must be trusted anew).
fn ensure_tls(dir: &Path, regions: &[RegionId]) -> anyhow::Result<()> {
    let mut leaves: Vec<(String, String, String, bool)> = vec![(
        "residency-gateway".to_owned(),
        GATEWAY_CERT.to_owned(),
        GATEWAY_KEY.to_owned(),
        true,
    )];
    for r in regions {
        leaves.push((format!("region-node-{r}"), node_cert(r), node_key(r), false));
    }
    let complete = [CA_CERT, CA_KEY]
        .into_iter()
        .map(str::to_owned)
        .chain(leaves.iter().flat_map(|l| [l.1.clone(), l.2.clone()]))
        .all(|rel| dir.join(rel).is_file());
    if complete {
        let client_complete = [GATEWAY_CLIENT_CERT, GATEWAY_CLIENT_KEY]
            .iter()
            .all(|rel| dir.join(rel).is_file());
        if !client_complete {
            // Issued by the existing CA (same name and key as the one ca.pem holds), so
            // nothing that trusts ca.pem needs to change.
            let ca_pem = std::fs::read_to_string(dir.join(CA_CERT))
                .with_context(|| format!("cannot read {}", dir.join(CA_CERT).display()))?;
            let ca_key = KeyPair::from_pem(
                &std::fs::read_to_string(dir.join(CA_KEY))
                    .with_context(|| format!("cannot read {}", dir.join(CA_KEY).display()))?,
            )
            .with_context(|| format!("{} is not a usable key", dir.join(CA_KEY).display()))?;
            write_client(dir, &Issuer::new(ca_params()?, ca_key), &ca_pem)?;
        }
        return Ok(());
    }
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params()?;
    let ca_cert = params.self_signed(&ca_key)?;
    write_private(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes())?;
    write_private(&dir.join(CA_CERT), ca_cert.pem().as_bytes())?;
    let issuer = Issuer::new(params, ca_key);
    write_client(dir, &issuer, &ca_cert.pem())?;
    for (name, cert_rel, key_rel, client_auth) in leaves {
        let (cert, key) = leaf(&name, &issuer, client_auth)?;
        write_private(&dir.join(key_rel), key.as_bytes())?;
        // The chain file carries the leaf then the CA, as TLS servers send it.
        write_private(
            &dir.join(cert_rel),
            format!("{cert}{}", ca_cert.pem()).as_bytes(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// The client certificate verifies against ca.pem as a node's mTLS verifier sees it.
    fn assert_client_cert_chains_to_ca(dir: &Path) {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(dir.join(CA_CERT)).unwrap();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        let chain = std::fs::read(dir.join(GATEWAY_CLIENT_CERT)).unwrap();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&chain)
            .map(Result::unwrap)
            .collect();
        verifier
            .verify_client_cert(&certs[0], &certs[1..], rustls::pki_types::UnixTime::now())
            .expect("the client certificate chains to ca.pem");
    }

    #[test]
    fn alnum_secrets_have_the_right_shape() {
        let a = random_alnum(SECRET_CHARS).unwrap();
        let b = random_alnum(SECRET_CHARS).unwrap();
        assert_eq!(a.len(), SECRET_CHARS);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn material_is_generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let regions = [RegionId::new("eu").unwrap(), RegionId::new("us").unwrap()];
        let first = ensure(dir.path(), &regions).unwrap();
        assert_client_cert_chains_to_ca(dir.path());
        let key = std::fs::read(dir.path().join("keys/eu-assertion.key")).unwrap();
        let ca = std::fs::read(dir.path().join(CA_CERT)).unwrap();
        assert_eq!(key.len(), 32);
        let mode = std::fs::metadata(dir.path().join(JWT_KEY))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let second = ensure(dir.path(), &regions).unwrap();
        assert_eq!(first.jwt_kid, second.jwt_kid);
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(
            key,
            std::fs::read(dir.path().join("keys/eu-assertion.key")).unwrap()
        );
        assert_eq!(ca, std::fs::read(dir.path().join(CA_CERT)).unwrap());
        // A missing client certificate is issued by the existing CA, which stays as it is.
        let client = std::fs::read(dir.path().join(GATEWAY_CLIENT_CERT)).unwrap();
        std::fs::remove_file(dir.path().join(GATEWAY_CLIENT_KEY)).unwrap();
        ensure(dir.path(), &regions).unwrap();
        assert_eq!(ca, std::fs::read(dir.path().join(CA_CERT)).unwrap());
        assert_ne!(
            client,
            std::fs::read(dir.path().join(GATEWAY_CLIENT_CERT)).unwrap()
        );
        assert_client_cert_chains_to_ca(dir.path());
        // A missing leaf regenerates the whole TLS set.
        std::fs::remove_file(dir.path().join("tls/us-node.key")).unwrap();
        ensure(dir.path(), &regions).unwrap();
        assert_ne!(ca, std::fs::read(dir.path().join(CA_CERT)).unwrap());
        // The JWT key is a PKCS#8 EC key jsonwebtoken can sign with.
        let pem = std::fs::read(dir.path().join(JWT_KEY)).unwrap();
        assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN PRIVATE KEY-----"));
        jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
    }
}
