//! The control side: the admin API, the dev IdP and one-off gateway calls, and the events
//! (key rotation, tier change, suspension, revocation).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::Method;
use integration_tests::https::Https;
use integration_tests::Http;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::load::{Cred, Customer, Shared, Suspension};

/// The control side: admin API, IdP, and one-off gateway calls.
pub(crate) struct Control {
    pub(crate) shared: Arc<Shared>,
    pub(crate) http: Http,
    pub(crate) https: Https,
    pub(crate) gateway: String,
    pub(crate) admin: String,
    pub(crate) admin_auth: String,
    pub(crate) idp: String,
    /// A customer whose quota the driver lifted: the rotation's probe.
    pub(crate) probe: usize,
}

impl Control {
    pub(crate) async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<integration_tests::Response> {
        self.http
            .try_send(
                method,
                &format!("{}{path}", self.admin),
                &[("authorization", &self.admin_auth)],
                body,
            )
            .await
            .map_err(|e| anyhow::anyhow!("admin {path}: {e}"))
    }

    pub(crate) async fn token(&self, tenant: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/token", self.idp),
                &[],
                Some(&json!({ "tenant_id": tenant, "sub": "soak" , "role": "owner"})),
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp /token: {e}"))?;
        anyhow::ensure!(
            r.status == 200,
            "idp /token answered {}: {}",
            r.status,
            r.text
        );
        Ok(r.json["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }

    pub(crate) async fn me(
        &self,
        authorization: &str,
    ) -> anyhow::Result<integration_tests::Response> {
        self.https
            .send(
                Method::GET,
                &format!("{}/v1/me", self.gateway),
                &[("authorization", authorization)],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("gateway /v1/me: {e}"))
    }

    /// Every credential: a fresh JWT for each customer, the demo API keys.
    pub(crate) async fn creds(&self) -> anyhow::Result<Vec<Cred>> {
        let mut out = Vec::new();
        for (i, c) in self.shared.customers.iter().enumerate() {
            out.push(Cred {
                customer: i,
                jwt: true,
                authorization: format!("Bearer {}", self.token(&c.id).await?),
            });
            if let Some(k) = &c.api_key {
                out.push(Cred {
                    customer: i,
                    jwt: false,
                    authorization: format!("ApiKey {k}"),
                });
            }
        }
        Ok(out)
    }

    /// Rotates the signing key, waits for the gateway to accept new-kid tokens, switches the
    /// load to them and retires the old key.
    pub(crate) async fn rotate(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/keys/rotate", self.idp),
                &[],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp rotate: {e}"))?;
        anyhow::ensure!(r.status == 200, "rotate answered {}: {}", r.status, r.text);
        let kid = r.json["kid"].as_str().context("kid")?.to_owned();
        let probe_customer = &self.shared.customers[self.probe];
        let probe = self.token(&probe_customer.id).await?;
        let header = jsonwebtoken::decode_header(&probe)?;
        anyhow::ensure!(
            header.kid.as_deref() == Some(kid.as_str()),
            "a token minted after the rotation carries kid {:?}, not {kid}",
            header.kid
        );
        // The gateway refetches the JWKS on an unknown kid, at most once per cool-down (30 s).
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(75);
        let mut refused = 0;
        loop {
            let r = self.me(&format!("Bearer {probe}")).await?;
            if r.status == 200 {
                break;
            }
            // 429: the probe customer's quota is shared with the load; ask again.
            anyhow::ensure!(
                r.status == 401 || r.status == 429,
                "a new-kid token answered {}: {}",
                r.status,
                r.text
            );
            refused += u32::from(r.status == 401);
            anyhow::ensure!(
                Instant::now() < deadline,
                "the gateway still refuses new-kid tokens 75 s after the rotation"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let accepted_after = asked.elapsed();
        let creds = self.creds().await?;
        *self.shared.creds.write().unwrap() = Arc::new(creds);
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/keys/retire", self.idp),
                &[],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp retire: {e}"))?;
        anyhow::ensure!(r.status == 200, "retire answered {}: {}", r.status, r.text);
        anyhow::ensure!(r.json["kids"] == json!([kid]), "after retire: {}", r.json);
        self.shared.event(
            "rotation",
            format!(
                "kid {kid}: accepted by the gateway after {:.1} s ({refused} probe 401s while it \
                 refetched), load switched, old key retired",
                accepted_after.as_secs_f64()
            ),
        );
        Ok(())
    }

    pub(crate) async fn patch(&self, c: &Customer, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .admin(
                Method::PATCH,
                &format!("/admin/v1/tenants/{}", c.id),
                Some(body),
            )
            .await?;
        anyhow::ensure!(
            r.status == 200,
            "PATCH {body} answered {}: {}",
            r.status,
            r.text
        );
        Ok(r.json)
    }

    /// Moves customer `n` to the neighbouring tier that keeps its credentials valid.
    pub(crate) async fn tier_change(&self, n: usize, tiers: &mut [String]) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let to = match tiers[n].as_str() {
            "starter" => "growth",
            "growth" => "starter",
            "scale" => "enterprise",
            _ => "scale",
        };
        let v = self.patch(c, &json!({ "tier": to })).await?;
        anyhow::ensure!(v["tier"] == to, "PATCH tier {to} answered {v}");
        let from = std::mem::replace(&mut tiers[n], to.to_owned());
        self.shared.event(
            "tier_change",
            format!("{} ({}) {from} -> {to}", c.id, c.region),
        );
        Ok(())
    }

    /// Polls `/v1/me` with `authorization` until it answers `want` or `within` passes.
    pub(crate) async fn until(
        &self,
        authorization: &str,
        want: u16,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let r = self.me(authorization).await?;
            if r.status == want {
                return Ok(t0.elapsed());
            }
            anyhow::ensure!(
                t0.elapsed() < within,
                "/v1/me still answers {} (want {want}) after {within:?}: {}",
                r.status,
                r.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Suspends customer `n` for a few seconds under load, then reactivates it.
    pub(crate) async fn suspend(&self, n: usize) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let auth = format!("Bearer {}", self.token(&c.id).await?);
        self.shared.suspensions.lock().unwrap().push(Suspension {
            customer: n,
            from: Instant::now(),
            until: None,
        });
        let v = self.patch(c, &json!({ "status": "suspended" })).await?;
        anyhow::ensure!(v["status"] == "suspended", "PATCH status answered {v}");
        let took = self.until(&auth, 403, Duration::from_secs(1)).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let v = self.patch(c, &json!({ "status": "active" })).await?;
        anyhow::ensure!(v["status"] == "active", "PATCH status answered {v}");
        let back = self.until(&auth, 200, Duration::from_secs(1)).await?;
        // From here on a 403 for this customer is a failure again.
        for s in self.shared.suspensions.lock().unwrap().iter_mut() {
            if s.customer == n && s.until.is_none() {
                s.until = Some(Instant::now());
            }
        }
        self.shared.event(
            "suspension",
            format!(
                "{} ({} {}): 403 after {} ms, 200 again {} ms after reactivation",
                c.id,
                c.region,
                c.tier,
                took.as_millis(),
                back.as_millis()
            ),
        );
        Ok(())
    }

    /// Creates an API key for customer `n`, uses it, revokes it: 401 within 1 s.
    pub(crate) async fn revoke(&self, n: usize) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let path = format!("/admin/v1/tenants/{}/api-keys", c.id);
        let r = self
            .admin(Method::POST, &path, Some(&json!({ "name": "soak" })))
            .await?;
        anyhow::ensure!(
            r.status == 201,
            "creating a key answered {}: {}",
            r.status,
            r.text
        );
        let key = r.json["api_key"].as_str().context("api_key")?.to_owned();
        let id = r.json["id"].as_str().context("id")?.to_owned();
        let auth = format!("ApiKey {key}");
        self.until(&auth, 200, Duration::from_secs(1)).await?;
        let r = self.me(&auth).await?;
        anyhow::ensure!(
            r.status != 200 || r.json["tenant_id"] == c.id.as_str(),
            "a new key of {} answered for another customer: {}",
            c.id,
            r.text
        );
        let r = self
            .admin(Method::DELETE, &format!("{path}/{id}"), None)
            .await?;
        anyhow::ensure!(
            r.status.is_success(),
            "revoking answered {}: {}",
            r.status,
            r.text
        );
        let took = self.until(&auth, 401, Duration::from_secs(1)).await?;
        // And it stays refused.
        let r = self.me(&auth).await?;
        anyhow::ensure!(r.status == 401, "a revoked key answered {}", r.status);
        self.shared
            .count("401 (key revoked by the driver, expected)");
        self.shared.event(
            "revocation",
            format!(
                "key {id} of {} ({}): used (200), revoked, 401 after {} ms",
                c.id,
                c.region,
                took.as_millis()
            ),
        );
        Ok(())
    }
}
