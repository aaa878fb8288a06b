//! [`AsClient`]: HTTPS to one authorization server. Network I/O.
//!
//! Contract: the AS's CA bundle is the only trust root (no system roots, no platform
//! verifier); rustls with the aws-lc-rs provider, set explicitly; optional client certificate
//! for mTLS; connect and total timeouts; redirects never followed; the response body is read as
//! a stream and reading stops at the byte limit ([`OauthError::BodyTooLarge`]); every request
//! carries a fresh UUIDv4 `x-fapi-interaction-id`; an optional per-AS rate limiter is awaited
//! before each request. Bodies and bearer credentials are exposed only while building the
//! request; failures never carry them, and an error body that echoes a credential we sent has
//! it replaced by `[redacted]` before anything parses it.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::clock::{Clock, SystemClock};
use super::egress::{EgressPolicy, EgressResolver, Lookup, ResolvedInternal};
use super::error::{OauthError, Step};
use super::ratelimit::Limiter;
use super::tls::{ClientIdentity, TransportConfig, config_error, tls_config};

/// A request body; secret bodies (forms with assertions or tokens, signed requests) stay
/// wrapped until sent.
pub enum RequestBody {
    /// Public JSON or form bytes.
    Public(Vec<u8>),
    /// A body that holds credentials.
    Secret(SecretString),
}

/// One request to the AS.
pub struct AsRequest<'a> {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Target URL.
    pub url: Url,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'a str>,
    /// `Authorization: Bearer` credential (initial access token or RAT).
    pub bearer: Option<&'a SecretString>,
    /// The body.
    pub body: Option<RequestBody>,
}

impl<'a> AsRequest<'a> {
    /// A bodiless request.
    pub fn new(method: reqwest::Method, url: Url) -> Self {
        Self {
            method,
            url,
            content_type: None,
            bearer: None,
            body: None,
        }
    }

    /// Sets a body and its content type.
    pub fn body(mut self, content_type: &'a str, body: RequestBody) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }

    /// Sets a bearer credential.
    pub fn bearer(mut self, token: &'a SecretString) -> Self {
        self.bearer = Some(token);
        self
    }
}

/// A response whose body was read within the limit.
pub struct AsResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body (may hold secrets: parse it, never log it).
    pub body: Vec<u8>,
    /// The `x-fapi-interaction-id` sent with the request.
    pub interaction_id: String,
}

/// Shows status, interaction id and body length only: a body may hold a token.
impl std::fmt::Debug for AsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsResponse")
            .field("status", &self.status)
            .field("interaction_id", &self.interaction_id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl AsResponse {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The classified error for a non-success response.
    pub fn error(&self, step: Step, now: jiff::Timestamp) -> OauthError {
        let retry_after = self
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        OauthError::from_status(
            step,
            self.status,
            retry_after,
            &self.body,
            &self.interaction_id,
            now,
        )
    }

    /// Parses the body as JSON without letting serde quote it in the error.
    pub fn json(&self, step: Step) -> Result<serde_json::Value, OauthError> {
        serde_json::from_slice(&self.body).map_err(|e| OauthError::invalid_json(step, &e))
    }
}

/// HTTPS client for one AS and one client certificate (or none). Cheap to clone.
#[derive(Clone)]
pub struct AsClient {
    http: reqwest::Client,
    body_limit: usize,
    x5t_s256: Option<String>,
    limiter: Option<Limiter>,
    clock: Arc<dyn Clock>,
    trust: Arc<str>,
    egress: Option<Arc<EgressPolicy>>,
    resolver: EgressResolver,
}

impl std::fmt::Debug for AsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsClient")
            .field("x5t_s256", &self.x5t_s256)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl AsClient {
    /// Builds a client. Use [`super::ClientPool`] to reuse connections across calls.
    pub fn new(
        config: &TransportConfig,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, OauthError> {
        let tls = tls_config(&config.ca_bundle_pem, identity)?;
        // Names are checked as resolved too (issue 13, item 5): see `super::egress`.
        let resolver = EgressResolver::default();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(resolver.clone())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(config.idle_connection)
            .pool_max_idle_per_host(usize::from(!config.idle_connection.is_zero()))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .user_agent(concat!("tpp-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error("http client", e))?;
        Ok(Self {
            http,
            body_limit: config.body_limit,
            x5t_s256: identity.map(|id| id.x5t_s256().to_owned()),
            limiter: None,
            clock: Arc::new(SystemClock),
            trust: trust_id(&config.ca_bundle_pem).into(),
            egress: None,
            resolver,
        })
    }

    /// Checks every request, and every address a name resolves to, against `policy` instead of
    /// the operator-wide one ([`super::egress::install`]). Clones made before share the
    /// resolver's policy: call it right after [`Self::new`].
    pub fn with_egress(mut self, policy: Arc<EgressPolicy>) -> Self {
        self.resolver.set_policy(policy.clone());
        self.egress = Some(policy);
        self
    }

    /// Looks names up with `lookup` instead of the system resolver (tests: a public name mapped
    /// to a loopback address). The egress filter still applies to its answers.
    pub fn with_lookup(self, lookup: Arc<dyn Lookup>) -> Self {
        self.resolver.set_lookup(lookup);
        self
    }

    /// The SHA-256 (hex) of the CA bundle this client trusts: what a cache of anything fetched
    /// through it must be keyed by besides the URL (issue 13, item 5).
    pub fn trust_id(&self) -> &str {
        &self.trust
    }

    /// Shares a per-AS rate limiter.
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Replaces the clock used for `Retry-After` dates and token times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// True when a client certificate is presented (selects `mtls_endpoint_aliases`).
    pub fn is_mtls(&self) -> bool {
        self.x5t_s256.is_some()
    }

    /// `x5t#S256` of the presented client certificate.
    pub fn client_x5t_s256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }

    /// The clock of this client.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Sends one request (after the rate limiter allows it) and reads the body within the limit.
    /// Non-2xx statuses are returned, not turned into errors: see [`AsResponse::error`].
    pub async fn send(&self, step: Step, req: AsRequest<'_>) -> Result<AsResponse, OauthError> {
        self.send_after(step, req, std::future::ready(Ok(()))).await
    }

    /// [`Self::send`], with `ready` awaited once the rate limiter allowed the request and
    /// immediately before it is sent: a registration's intent is recorded there, so that a
    /// crash while waiting in the limiter leaves no intent for a request the AS never saw. An
    /// error of `ready` fails the call before anything is sent.
    pub async fn send_after(
        &self,
        step: Step,
        req: AsRequest<'_>,
        ready: impl std::future::Future<Output = Result<(), OauthError>>,
    ) -> Result<AsResponse, OauthError> {
        let origin = req.url.origin().ascii_serialization();
        if req.url.scheme() != "https" {
            return Err(OauthError::InsecureUrl { step, origin });
        }
        if let Some(policy) = self.egress.clone().or_else(super::egress::installed) {
            let host = req.url.host_str().unwrap_or_default();
            if !policy.allows(host) {
                return Err(OauthError::EgressRefused {
                    step,
                    host: host.to_owned(),
                });
            }
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        // Leader election: no AS call starts once this replica may have lost the lease
        // (checked after the limiter wait, immediately before the request is sent).
        crate::lease::until_acting_allowed("authorization server call").await;
        ready.await?;
        let effect = failpoint_effect(step);
        crate::failpoints::hit(crate::failpoints::name(
            crate::failpoints::Side::Before,
            effect,
        ))
        .await
        .map_err(|i| OauthError::Injected {
            step,
            failpoint: i.0,
        })?;
        let interaction_id = uuid::Uuid::new_v4().to_string();
        let mut builder = self
            .http
            .request(req.method, req.url)
            .header("x-fapi-interaction-id", &interaction_id)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = req.bearer {
            let mut value = reqwest::header::HeaderValue::from_str(&format!(
                "Bearer {}",
                token.expose_secret()
            ))
            .map_err(|_| OauthError::TransportConfig {
                what: "bearer credential is not a valid header value".into(),
                source: None,
            })?;
            value.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(content_type) = req.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let mut secrets: Vec<SecretString> = req.bearer.into_iter().cloned().collect();
        builder = match req.body {
            Some(RequestBody::Public(bytes)) => builder.body(bytes),
            Some(RequestBody::Secret(secret)) => {
                secrets.extend(form_values(&secret));
                secrets.push(secret.clone());
                builder.body(secret.expose_secret().to_owned())
            }
            None => builder,
        };
        let started = std::time::Instant::now();
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                let err = classify(step, &origin, e);
                tracing::debug!(%step, %origin, %interaction_id, reason = %err.reason(), "as call failed");
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > self.body_limit as u64)
        {
            return Err(OauthError::BodyTooLarge {
                step,
                origin,
                limit: self.body_limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(step, &origin, e))?
        {
            if body.len() + chunk.len() > self.body_limit {
                return Err(OauthError::BodyTooLarge {
                    step,
                    origin,
                    limit: self.body_limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            body = scrub(body, &secrets);
        }
        tracing::debug!(
            %step,
            %origin,
            %interaction_id,
            status,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "as call"
        );
        // The AS handled the request; a failure here loses its answer.
        crate::failpoints::hit(crate::failpoints::name(
            crate::failpoints::Side::After,
            effect,
        ))
        .await
        .map_err(|i| OauthError::Injected {
            step,
            failpoint: i.0,
        })?;
        Ok(AsResponse {
            status,
            headers,
            body,
            interaction_id,
        })
    }
}

/// The effect part of the failpoint names of `step` (crate::failpoints::NAMES).
fn failpoint_effect(step: Step) -> &'static str {
    match step {
        Step::Discovery => "discovery",
        Step::Register => "registration_post",
        Step::ReadRegistration => "registration_get",
        Step::UpdateRegistration => "registration_put",
        Step::DeleteRegistration => "registration_delete",
        Step::HubOnboarding => "hub_onboarding",
        Step::Token => "token",
        Step::Introspection => "introspection",
        Step::Revocation => "revocation",
        Step::PushedAuthorization => "pushed_authorization",
    }
}

/// The values of a form-encoded secret body (assertions, tokens, request objects), so an AS
/// that echoes one in an error description cannot leak it into an error.
fn form_values(body: &SecretString) -> Vec<SecretString> {
    url::form_urlencoded::parse(body.expose_secret().as_bytes())
        .filter(|(_, v)| v.len() >= 8)
        .map(|(_, v)| SecretString::from(v.into_owned()))
        .collect()
}

/// Replaces every occurrence of a secret that was sent with `[redacted]` in an error body.
fn scrub(body: Vec<u8>, secrets: &[SecretString]) -> Vec<u8> {
    let Ok(mut text) = String::from_utf8(body) else {
        return Vec::new();
    };
    for secret in secrets {
        let secret = secret.expose_secret();
        if secret.len() >= 8 && text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
    }
    text.into_bytes()
}

/// SHA-256 of a CA bundle, hex.
fn trust_id(ca_bundle_pem: &[u8]) -> String {
    crate::hex::sha256_hex(ca_bundle_pem)
}

/// reqwest's error message names the request URL; its query and fragment can carry values no
/// error message may repeat (issue 13, item 8): keep scheme, host and path only.
fn without_query(source: reqwest::Error) -> reqwest::Error {
    match source.url().cloned() {
        Some(mut url) if url.query().is_some() || url.fragment().is_some() => {
            url.set_query(None);
            url.set_fragment(None);
            source.with_url(url)
        }
        _ => source,
    }
}

/// Finds a rustls error in a source chain (looking inside nested `io::Error` wrappers).
fn rustls_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error::source` skips the wrapped error itself: descend into it explicitly.
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The egress resolver's refusal, if it is in the chain of `e`.
fn resolved_internal(e: &reqwest::Error) -> Option<&ResolvedInternal> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(refused) = err.downcast_ref::<ResolvedInternal>() {
            return Some(refused);
        }
        next = err.source();
    }
    None
}

fn classify(step: Step, origin: &str, source: reqwest::Error) -> OauthError {
    let origin = origin.to_owned();
    let source = without_query(source);
    if let Some(refused) = resolved_internal(&source) {
        return OauthError::EgressResolvedInternal {
            step,
            host: refused.host.clone(),
            addrs: refused.addrs.clone(),
        };
    }
    if let Some(detail) = rustls_error(&source) {
        return OauthError::Tls {
            step,
            origin,
            detail,
            source,
        };
    }
    if source.is_timeout() {
        OauthError::Timeout {
            step,
            origin,
            source,
        }
    } else if source.is_connect() {
        OauthError::Connect {
            step,
            origin,
            source,
        }
    } else {
        OauthError::Http {
            step,
            origin,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole error chain, as `{:#}`-style reporting prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out.push_str(": ");
            out.push_str(&s.to_string());
            next = s.source();
        }
        out
    }

    #[tokio::test]
    async fn transport_errors_carry_no_query_string_or_fragment() {
        // A loopback port with nothing listening: the connect error names the URL.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let url = format!("http://127.0.0.1:{port}/token?code=SECRETCODE#frag-SECRET");
        let err = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .expect_err("nothing listens");
        assert!(
            chain(&err).contains("SECRETCODE"),
            "precondition: reqwest names the url"
        );
        let classified = classify(Step::Token, "http://127.0.0.1", err);
        let text = chain(&classified);
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains('?') && !text.contains('#'), "{text}");
        assert!(text.contains("/token"), "the path stays: {text}");
    }
}
