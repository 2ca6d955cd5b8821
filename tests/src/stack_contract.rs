//! The `stack.json` contract of SPEC §4, checked in Rust so that the project's own tests hold
//! it from the repository alone (no `../shared` beside the clone).
//!
//! [`check`] applies every rule of `../shared/tools/check-stack-json`: each required field is
//! present with the right type, URLs have the right scheme and an authority, referenced files
//! exist (paths relative to the file itself, not to the working directory), the US, EU and
//! APAC regions are there with a distinct app role, and the demo tenants cover every region
//! and tier, with an API key on `scale` and `enterprise`. It reports every problem at once.
//!
//! It is deliberately stricter than the Python tool in a few corners that the tool lets
//! through by accident: an explicit `null` is a wrong type (the tool skips it as if it were
//! valid), a demo tenant id must be a JSON string and an `api_key` a non-empty string.
//!
//! It does not own what `stack.json` means beyond the contract (`node_tls`, `token_url`,
//! `display_name`, …): extra fields are allowed, as in the tool.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Region ids every local stack has.
const REGION_IDS_MIN: [&str; 3] = ["apac", "eu", "us"];
/// Every customer tier; demo tenants cover each one.
const TIERS: [&str; 4] = ["enterprise", "growth", "scale", "starter"];
/// Tiers whose demo tenants carry their demo API key.
const KEYED_TIERS: [&str; 2] = ["enterprise", "scale"];
/// JWT algorithms the stack may sign customer tokens with: asymmetric only.
const JWT_ALGS: [&str; 5] = ["ES256", "ES384", "EdDSA", "PS256", "RS256"];
const HTTP: &[&str] = &["http", "https"];
const POSTGRES: &[&str] = &["postgres", "postgresql"];
/// `admin.token` must be at least this many characters.
const ADMIN_TOKEN_MIN_CHARS: usize = 16;

/// Checks the `stack.json` at `path` against the SPEC §4 contract.
///
/// Relative paths inside the document (`gateway.ca_cert`, `jwt.private_key_pem`,
/// `regions[].assertion.key_file`) are resolved against the directory of `path` (made
/// absolute from the current directory first); absolute ones are used as they are.
///
/// # Errors
/// Every problem found, one human-readable line each (`<field>: <what is wrong>`); a single
/// `cannot read …` line when the file cannot be read or is not JSON.
pub fn check(path: &Path) -> Result<(), Vec<String>> {
    let doc: Value = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let problems = check_document(&doc, &base);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Checks an already parsed `stack.json` whose relative paths are relative to `base`.
///
/// Returns every problem found; empty when the document holds the contract.
#[must_use]
pub fn check_document(doc: &Value, base: &Path) -> Vec<String> {
    let mut c = Checker {
        base: base.to_path_buf(),
        problems: Vec::new(),
    };
    c.gateway(doc);
    c.admin(doc);
    c.jwt(doc);
    c.url(doc, "directory.database_url", POSTGRES);
    let ids = c.regions(doc);
    c.demo_tenants(doc, &ids);
    c.problems
}

struct Checker {
    base: PathBuf,
    problems: Vec<String>,
}

impl Checker {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// The value at `dotted` (object keys) under `obj`; reports it missing when absent.
    fn field<'a>(&mut self, obj: &'a Value, dotted: &str, shown: &str) -> Option<&'a Value> {
        let found = dotted
            .split('.')
            .try_fold(obj, |cur, part| cur.as_object().and_then(|o| o.get(part)));
        if found.is_none() {
            self.problem(format!("missing field: {shown}"));
        }
        found
    }

    /// A present, non-empty string at `dotted`.
    fn non_empty_string(&mut self, obj: &Value, dotted: &str, shown: &str) {
        if let Some(v) = self.field(obj, dotted, shown) {
            if v.as_str().is_none_or(str::is_empty) {
                self.problem(format!("{shown}: expected a non-empty string"));
            }
        }
    }

    fn url(&mut self, doc: &Value, dotted: &str, schemes: &[&str]) {
        self.url_at(doc, dotted, dotted, schemes);
    }

    /// A present URL at `dotted` with one of `schemes` and a non-empty authority.
    fn url_at(&mut self, obj: &Value, dotted: &str, shown: &str, schemes: &[&str]) {
        if let Some(v) = self.field(obj, dotted, shown) {
            if !is_url(v, schemes) {
                self.problem(format!(
                    "{shown}: not a {} URL: {}",
                    schemes.join("/"),
                    show(v)
                ));
            }
        }
    }

    /// A present, non-empty path at `dotted` naming an existing regular file (following
    /// symlinks), relative to the stack.json's directory unless absolute.
    fn file(&mut self, obj: &Value, dotted: &str, shown: &str) {
        let Some(v) = self.field(obj, dotted, shown) else {
            return;
        };
        match v.as_str() {
            Some(s) if !s.is_empty() => {
                if !self.base.join(s).is_file() {
                    self.problem(format!("{shown}: file not found: {s}"));
                }
            }
            _ => self.problem(format!("{shown}: expected a path, got {}", show(v))),
        }
    }

    fn gateway(&mut self, doc: &Value) {
        self.url(doc, "gateway.url", HTTP);
        // The CA is only needed to trust an HTTPS gateway (the tool's rule: a string prefix).
        let https = doc
            .pointer("/gateway/url")
            .and_then(Value::as_str)
            .is_some_and(|u| u.starts_with("https"));
        if https {
            self.file(doc, "gateway.ca_cert", "gateway.ca_cert");
        }
    }

    fn admin(&mut self, doc: &Value) {
        self.url(doc, "admin.url", HTTP);
        if let Some(tok) = self.field(doc, "admin.token", "admin.token") {
            // Never echo the token itself.
            if tok
                .as_str()
                .is_none_or(|t| t.chars().count() < ADMIN_TOKEN_MIN_CHARS)
            {
                self.problem(format!(
                    "admin.token: expected a string of at least {ADMIN_TOKEN_MIN_CHARS} characters"
                ));
            }
        }
    }

    fn jwt(&mut self, doc: &Value) {
        for key in [
            "issuer",
            "audience",
            "alg",
            "kid",
            "tenant_claim",
            "role_claim",
        ] {
            let dotted = format!("jwt.{key}");
            self.non_empty_string(doc, &dotted, &dotted);
        }
        if let Some(alg) = doc.pointer("/jwt/alg").and_then(Value::as_str) {
            if !alg.is_empty() && !JWT_ALGS.contains(&alg) {
                self.problem(format!(
                    "jwt.alg: expected an asymmetric algorithm ({}), got {alg:?}",
                    JWT_ALGS.join(", ")
                ));
            }
        }
        self.file(doc, "jwt.private_key_pem", "jwt.private_key_pem");
        self.url(doc, "jwt.jwks_url", HTTP);
    }

    /// Checks `regions[]`; returns the ids it names (even of otherwise broken regions).
    fn regions(&mut self, doc: &Value) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let Some(regions) = self.field(doc, "regions", "regions") else {
            return ids;
        };
        let Some(regions) = regions.as_array().filter(|r| !r.is_empty()) else {
            self.problem("regions: expected a non-empty list".to_owned());
            return ids;
        };
        for (i, r) in regions.iter().enumerate() {
            let at = |k: &str| format!("regions[{i}].{k}");
            if !r.is_object() {
                self.problem(format!("regions[{i}]: expected an object"));
                continue;
            }
            match r["id"].as_str() {
                Some(id) if !id.is_empty() => {
                    ids.insert(id.to_owned());
                }
                _ => self.problem(format!("{}: expected a non-empty string", at("id"))),
            }
            self.url_at(r, "node_url", &at("node_url"), HTTP);
            self.url_at(r, "database_url", &at("database_url"), POSTGRES);
            self.url_at(r, "app_database_url", &at("app_database_url"), POSTGRES);
            if r["assertion"].is_object() {
                let a = &r["assertion"];
                self.non_empty_string(a, "alg", &at("assertion.alg"));
                self.non_empty_string(a, "kid", &at("assertion.kid"));
                self.file(a, "key_file", &at("assertion.key_file"));
            } else {
                self.problem(format!(
                    "{}: expected an object with alg, kid, key_file",
                    at("assertion")
                ));
            }
            // The node must run as the app role: RLS does not bind the owner.
            if truthy(&r["database_url"]) && r["database_url"] == r["app_database_url"] {
                self.problem(format!(
                    "regions[{i}]: app_database_url must use the app role, not the owner"
                ));
            }
        }
        let missing: Vec<_> = REGION_IDS_MIN
            .iter()
            .filter(|id| !ids.contains(**id))
            .collect();
        if !missing.is_empty() {
            self.problem(format!("regions: missing {missing:?}"));
        }
        ids
    }

    fn demo_tenants(&mut self, doc: &Value, ids: &BTreeSet<String>) {
        let Some(tenants) = self.field(doc, "demo_tenants", "demo_tenants") else {
            return;
        };
        let Some(tenants) = tenants.as_array().filter(|t| !t.is_empty()) else {
            self.problem("demo_tenants: expected a non-empty list".to_owned());
            return;
        };
        let mut seen_regions = BTreeSet::new();
        let mut seen_tiers = BTreeSet::new();
        for (i, t) in tenants.iter().enumerate() {
            if !t.is_object() {
                self.problem(format!("demo_tenants[{i}]: expected an object"));
                continue;
            }
            if t["id"]
                .as_str()
                .is_none_or(|s| uuid::Uuid::parse_str(s).is_err())
            {
                self.problem(format!("demo_tenants[{i}].id: not a UUID: {}", t["id"]));
            }
            let region = t["region"].as_str();
            if !region.is_some_and(|r| ids.contains(r)) {
                self.problem(format!(
                    "demo_tenants[{i}].region: {} is not a region in regions[]",
                    t["region"]
                ));
            }
            let tier = t["tier"].as_str();
            if !tier.is_some_and(|x| TIERS.contains(&x)) {
                self.problem(format!(
                    "demo_tenants[{i}].tier: {} is not one of {TIERS:?}",
                    t["tier"]
                ));
            }
            if let Some(tier) = tier.filter(|x| KEYED_TIERS.contains(x)) {
                if t["api_key"].as_str().is_none_or(str::is_empty) {
                    self.problem(format!(
                        "demo_tenants[{i}]: a {tier} tenant should carry its demo api_key"
                    ));
                }
            }
            if !t["name"].is_string() {
                self.problem(format!("demo_tenants[{i}].name: expected a string"));
            }
            seen_regions.extend(region);
            seen_tiers.extend(tier);
        }
        let uncovered: Vec<_> = ids
            .iter()
            .filter(|id| !seen_regions.contains(id.as_str()))
            .collect();
        if !uncovered.is_empty() {
            self.problem(format!("demo_tenants: no demo tenant in {uncovered:?}"));
        }
        let tierless: Vec<_> = TIERS.iter().filter(|x| !seen_tiers.contains(**x)).collect();
        if !tierless.is_empty() {
            self.problem(format!("demo_tenants: no demo tenant of tier {tierless:?}"));
        }
    }
}

/// A string URL with one of `schemes` and a non-empty authority (`//host…`), like Python's
/// `urlparse(v).scheme in schemes and urlparse(v).netloc`.
fn is_url(v: &Value, schemes: &[&str]) -> bool {
    v.as_str()
        .and_then(|s| url::Url::parse(s).ok())
        .is_some_and(|u| schemes.contains(&u.scheme()) && !u.authority().is_empty())
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value for a problem line; string URLs lose their password.
fn show(v: &Value) -> String {
    match v.as_str() {
        Some(s) if s.contains('@') => format!("{:?}", residency_config::redact_url(s)),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests;
