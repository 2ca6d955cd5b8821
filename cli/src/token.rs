//! `residency token --tenant <id>`: mints a development ES256 JWT that the gateway accepts,
//! signed with a private key on disk.
//!
//! Issuer, audience, `kid`, key file and claim names come from flags, else from the `jwt`
//! section of `--stack` (default `.residency/stack.json`, SPEC §4; its key path is relative to
//! the file). For development stacks only: whoever holds the key can act as any tenant.
//! Prints the token alone (so `TOKEN=$(residency token ...)` works), or
//! `{"token", "expires_at"}` with `--json`. Exit 0, or 64 (a configuration error: no usable
//! stack.json, key or claim settings) when it cannot mint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

/// The longest lifetime a dev token may have.
const MAX_TTL_SECS: u64 = 24 * 3600;

/// `residency token` arguments.
#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The tenant (customer) id the token is for.
    #[arg(long)]
    tenant: String,
    /// Role claim; without it the region node uses the subject's member record.
    #[arg(long)]
    role: Option<String>,
    /// Subject claim (`residency up` gives every demo tenant an owner member `demo-owner`).
    #[arg(long, default_value = "demo-owner")]
    sub: String,
    /// Lifetime, e.g. 15m, 1h (at most 24h).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// PKCS#8 PEM private key (EC P-256) to sign with (default: jwt.private_key_pem of --stack).
    #[arg(long)]
    key: Option<PathBuf>,
    /// `iss` claim (default: jwt.issuer of --stack).
    #[arg(long)]
    issuer: Option<String>,
    /// `aud` claim (default: jwt.audience of --stack).
    #[arg(long)]
    audience: Option<String>,
    /// `kid` header (default: jwt.kid of --stack).
    #[arg(long)]
    kid: Option<String>,
    /// Name of the tenant claim (default: jwt.tenant_claim of --stack, else tenant_id).
    #[arg(long)]
    tenant_claim: Option<String>,
    /// Name of the role claim (default: jwt.role_claim of --stack, else role).
    #[arg(long)]
    role_claim: Option<String>,
    /// The local stack's description, written by `residency up`.
    #[arg(long, default_value = ".residency/stack.json")]
    stack: PathBuf,
    /// Print `{"token", "expires_at"}` instead of the bare token.
    #[arg(long)]
    json: bool,
}

/// Runs `residency token`.
pub(crate) fn run(args: &TokenArgs) -> ExitCode {
    match mint(args, residency_core::assertion::now_secs()) {
        Ok((token, exp)) => {
            if args.json {
                println!("{}", json!({ "token": token, "expires_at": exp }));
            } else {
                println!("{token}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("residency token: {e}");
            ExitCode::from(crate::exit::CONFIG)
        }
    }
}

/// The `jwt` section of a stack file and the directory its paths are relative to.
fn stack_jwt(path: &Path) -> Result<(Value, PathBuf), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not json: {e}", path.display()))?;
    let base = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    Ok((v["jwt"].clone(), base))
}

/// Mints the token at `now`; returns it and its expiry.
fn mint(args: &TokenArgs, now: u64) -> Result<(String, u64), String> {
    uuid::Uuid::parse_str(&args.tenant).map_err(|_| "--tenant must be a uuid".to_owned())?;
    let ttl = residency_config::duration::parse(&args.ttl)?.as_secs();
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err("--ttl must be between 1s and 24h".into());
    }
    // The stack file is needed only for what the flags leave out.
    let needs_stack = args.key.is_none()
        || args.issuer.is_none()
        || args.audience.is_none()
        || args.kid.is_none();
    let (jwt, base) = if needs_stack {
        stack_jwt(&args.stack).map_err(|e| {
            format!("{e}; pass --key, --issuer, --audience and --kid, or run `residency up`")
        })?
    } else {
        (Value::Null, PathBuf::from("."))
    };
    let pick = |flag: &Option<String>, key: &str| -> Result<String, String> {
        flag.clone()
            .or_else(|| jwt[key].as_str().map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "no {key}: pass --{} or use a stack.json with jwt.{key}",
                    key.replace('_', "-")
                )
            })
    };
    let issuer = pick(&args.issuer, "issuer")?;
    let audience = pick(&args.audience, "audience")?;
    let kid = pick(&args.kid, "kid")?;
    if let Some(alg) = jwt["alg"].as_str() {
        if alg != "ES256" {
            return Err(format!(
                "the stack's jwt.alg is {alg}; only ES256 keys are supported"
            ));
        }
    }
    let key_path =
        match &args.key {
            Some(k) => k.clone(),
            None => base.join(jwt["private_key_pem"].as_str().ok_or(
                "no private key: pass --key or use a stack.json with jwt.private_key_pem",
            )?),
        };
    let pem = std::fs::read(&key_path)
        .map_err(|e| format!("cannot read the private key {}: {e}", key_path.display()))?;
    let key = EncodingKey::from_ec_pem(&pem).map_err(|e| {
        format!(
            "{} is not an EC private key in PEM: {e}",
            key_path.display()
        )
    })?;
    let tenant_claim = args
        .tenant_claim
        .clone()
        .or_else(|| jwt["tenant_claim"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "tenant_id".into());
    let role_claim = args
        .role_claim
        .clone()
        .or_else(|| jwt["role_claim"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "role".into());
    let exp = now + ttl;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(audience));
    claims.insert("sub".into(), json!(args.sub));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    claims.insert(tenant_claim, json!(args.tenant));
    if let Some(role) = &args.role {
        claims.insert(role_claim, json!(role));
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid);
    let token = jsonwebtoken::encode(&header, &Value::Object(claims), &key)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok((token, exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use jsonwebtoken::{DecodingKey, Validation};

    fn pem(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn mints_a_token_from_a_stack_file_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/jwt.pem"), pem(pkcs8.as_ref())).unwrap();
        let stack = json!({ "jwt": {
            "issuer": "http://idp.test/", "audience": "residency-api", "alg": "ES256",
            "kid": "dev-1", "private_key_pem": "keys/jwt.pem",
            "tenant_claim": "org_tenant", "role_claim": "r",
        }});
        std::fs::write(dir.path().join("stack.json"), stack.to_string()).unwrap();
        let tenant = uuid::Uuid::now_v7().to_string();
        let args = TokenArgs {
            tenant: tenant.clone(),
            role: Some("viewer".into()),
            sub: "demo-owner".into(),
            ttl: "15m".into(),
            key: None,
            issuer: None,
            audience: None,
            kid: None,
            tenant_claim: None,
            role_claim: None,
            stack: dir.path().join("stack.json"),
            json: false,
        };
        let now = residency_core::assertion::now_secs();
        let (token, exp) = mint(&args, now).unwrap();
        assert_eq!(exp, now + 900);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("dev-1"));
        let public = pair.public_key().as_ref();
        let key = DecodingKey::from_ec_components(
            &base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &public[1..33],
            ),
            &base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &public[33..65],
            ),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["residency-api"]);
        v.set_issuer(&["http://idp.test/"]);
        let claims = jsonwebtoken::decode::<Value>(&token, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["org_tenant"], tenant.as_str());
        assert_eq!(claims["r"], "viewer");
        assert_eq!(claims["sub"], "demo-owner");
    }

    #[test]
    fn clear_errors_without_a_stack_or_with_bad_input() {
        let args = |tenant: &str, ttl: &str| TokenArgs {
            tenant: tenant.into(),
            role: None,
            sub: "s".into(),
            ttl: ttl.into(),
            key: None,
            issuer: None,
            audience: None,
            kid: None,
            tenant_claim: None,
            role_claim: None,
            stack: PathBuf::from("/nonexistent/stack.json"),
            json: false,
        };
        let t = uuid::Uuid::now_v7().to_string();
        assert!(mint(&args("nope", "1h"), 0)
            .unwrap_err()
            .contains("--tenant"));
        assert!(mint(&args(&t, "48h"), 0).unwrap_err().contains("--ttl"));
        let e = mint(&args(&t, "1h"), 0).unwrap_err();
        assert!(e.contains("--key") && e.contains("residency up"), "{e}");
    }
}
