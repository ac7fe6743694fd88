//! The one HTTP client policy: every request has a connect and a per-request timeout inside an
//! overall [`Deadline`], only transient failures are retried (capped, jittered backoff), 404 means
//! absent, bodies are capped while they stream, there is no proxy, and redirects are followed
//! only where the policy allows them (never from https to http).
//!
//! Metadata reads use [`RetryPolicy::metadata`] with [`Client::fetch`]; the installer download
//! uses [`RetryPolicy::download`] with [`Client::stream`], which resumes with `Range` and hands
//! every byte once, in order, to a [`Sink`]; progress events use [`RetryPolicy::report`] with
//! [`Request::post_json`].

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use tracing::debug;

use crate::{Error, Result};

/// Metadata documents are small; anything larger is a broken or hostile server.
pub const MAX_METADATA_BODY: u64 = 1 << 20;

/// The instant by which a whole operation (all attempts, all requests) must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The unused budget.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The total budget this deadline was created with.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// A deadline no later than this one and at most `cap` from now.
    pub fn capped(&self, cap: Duration) -> Self {
        let sub = Self::after(cap.min(self.remaining()));
        Self {
            at: sub.at.min(self.at),
            budget: sub.budget,
        }
    }
}

/// Timeouts, backoff and limits for one kind of traffic.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub connect_timeout: Duration,
    /// Per attempt, from connecting to the last body byte.
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// `Retry-After` is honoured up to this.
    pub retry_after_max: Duration,
    /// Bodies longer than this are refused (for [`Client::fetch`]).
    pub max_body: u64,
    /// A body that stops for this long fails the attempt (which [`Client::stream`] resumes).
    pub stall_timeout: Duration,
    /// Attempts in a row that deliver nothing before giving up, the deadline permitting.
    pub max_attempts: u32,
    /// Redirects followed per request; 0 follows none (a 3xx is then fatal). A redirect from
    /// https to http is refused whatever this says.
    pub max_redirects: usize,
}

impl RetryPolicy {
    /// Metadata services: connect 5 s, request 10 s, backoff 250 ms → 10 s, 1 MiB bodies.
    pub fn metadata() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(10),
            max_body: MAX_METADATA_BODY,
            stall_timeout: Duration::from_secs(10),
            max_attempts: u32::MAX,
            max_redirects: 0,
        }
    }

    /// Probing for a metadata service when DMI is silent: fail fast, the deadline is short.
    pub fn probe() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(1),
            max_body: MAX_METADATA_BODY,
            stall_timeout: Duration::from_secs(2),
            max_attempts: u32::MAX,
            max_redirects: 0,
        }
    }

    /// Asking a download's size before it (a HEAD): metadata's timeouts, 3 attempts, and the
    /// download's redirects (release hosting redirects to a CDN).
    pub fn size_probe() -> Self {
        Self {
            max_attempts: 3,
            max_redirects: 5,
            ..Self::metadata()
        }
    }

    /// Large downloads streamed to a [`Sink`] (the installer): connect 15 s, no byte for 60 s
    /// ends an attempt, 5 attempts in a row without progress, up to 5 redirects (release
    /// hosting redirects to a CDN); [`Client::stream`] takes the size cap.
    pub fn download() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
            max_body: u64::MAX,
            stall_timeout: Duration::from_secs(60),
            max_attempts: 5,
            max_redirects: 5,
        }
    }

    /// Progress events (the webhook, GCP's guest attribute): connect and request 5 s, 3 attempts,
    /// backoff 500 ms → 2 s. A slow receiver costs an event, never the install.
    pub fn report() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(2),
            retry_after_max: Duration::from_secs(2),
            max_body: 64 << 10,
            stall_timeout: Duration::from_secs(5),
            max_attempts: 3,
            max_redirects: 0,
        }
    }

    /// The pause before attempt `attempt + 1`: exponential, capped, with full jitter on its
    /// upper half so that a fleet booting at once does not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.backoff_max);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1) from the standard library's per-process random hasher keys.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What to do with an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 404: the document does not exist.
    Absent,
    /// Transient: try again, after the server's `Retry-After` when it gave one.
    Retry {
        after: Option<Duration>,
    },
    Fatal,
}

/// The standard classification: 2xx success, 404 absent, 408/429/500/502/503/504 transient
/// (the list `curl --retry` uses), anything else fatal. `also_retry` is a provider's override
/// (Azure IMDS answers 404 and 410 while it is still starting).
pub fn classify(status: StatusCode, headers: &HeaderMap, also_retry: &[u16]) -> Outcome {
    let code = status.as_u16();
    if also_retry.contains(&code) {
        return Outcome::Retry {
            after: retry_after(headers),
        };
    }
    match code {
        200..=299 => Outcome::Success,
        404 => Outcome::Absent,
        408 | 429 | 500 | 502 | 503 | 504 => Outcome::Retry {
            after: retry_after(headers),
        },
        _ => Outcome::Fatal,
    }
}

/// Connection errors and timeouts are transient; a malformed request, a refused redirect and a
/// TLS peer that cannot be trusted (see [`tls_failure`]) are not.
pub fn classify_error(err: &reqwest::Error) -> Outcome {
    if err.is_builder() || err.is_redirect() || tls_failure(err).is_some() {
        Outcome::Fatal
    } else {
        Outcome::Retry { after: None }
    }
}

/// The TLS handshake failed in a way another attempt cannot fix: the same server presents the
/// same certificate (unknown issuer, expired, wrong name) and speaks the same protocol versions.
/// Returns what to tell the user, e.g. "TLS certificate verification failed: invalid peer
/// certificate: UnknownIssuer". Errors the peer may not repeat (a reset mid-handshake, a
/// timeout) are left to the transient list.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        match e.downcast_ref::<rustls::Error>() {
            Some(tls @ rustls::Error::InvalidCertificate(_)) => {
                return Some(format!("TLS certificate verification failed: {tls}"))
            }
            Some(
                tls @ (rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
                | rustls::Error::PeerIncompatible(_)),
            ) => return Some(format!("TLS handshake failed: {tls}")),
            _ => {}
        }
        // rustls errors arrive wrapped in io::Errors (nested, from tokio-rustls and the
        // connector), and io::Error::source() skips the wrapped error, so descend explicitly.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

/// `Retry-After` in seconds (the HTTP-date form is rare on metadata services and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// One request, as the provider module describes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Statuses retried on top of the standard list.
    pub also_retry: &'static [u16],
    /// Sent with every attempt.
    pub body: Option<bytes::Bytes>,
}

impl Request {
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: Vec::new(),
            also_retry: &[],
            body: None,
        }
    }

    pub fn head(url: Url) -> Self {
        Self {
            method: Method::HEAD,
            ..Self::get(url)
        }
    }

    pub fn put(url: Url) -> Self {
        Self {
            method: Method::PUT,
            ..Self::get(url)
        }
    }

    /// A POST of `value` as JSON.
    pub fn post_json<T: serde::Serialize>(url: Url, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::Other(format!("building a request to {url}: {e}")))?;
        Self {
            method: Method::POST,
            ..Self::get(url)
        }
        .header("content-type", "application/json")
        .map(|req| req.body(body))
    }

    pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::Other(format!(
                "building a request to {}: bad header value",
                self.url
            ))
        })?;
        self.headers.push((HeaderName::from_static(name), value));
        Ok(self)
    }

    /// A header whose value is a secret (a token): marked sensitive so it is never printed.
    pub fn secret_header(self, name: &'static str, value: &str) -> Result<Self> {
        let mut req = self.header(name, value)?;
        if let Some((_, v)) = req.headers.last_mut() {
            v.set_sensitive(true);
        }
        Ok(req)
    }

    pub fn also_retry(mut self, statuses: &'static [u16]) -> Self {
        self.also_retry = statuses;
        self
    }
}

/// A fetched body.
#[derive(Debug, Clone)]
pub struct Body {
    pub status: u16,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl Body {
    /// The body as text, or an error naming `what` when it is not UTF-8.
    pub fn text(&self, what: &str) -> Result<&str> {
        std::str::from_utf8(&self.bytes)
            .map_err(|_| Error::Other(format!("reading {what}: the body is not UTF-8 text")))
    }
}

/// The client: one reqwest client built for one policy, plus the `--metadata-base` override.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: RetryPolicy,
    base: Option<Url>,
}

impl Client {
    /// `base` replaces scheme, host and port of every URL given to [`Client::url`] and prefixes
    /// its path (the `--metadata-base` rehearsal option).
    pub fn new(policy: RetryPolicy, base: Option<Url>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect_policy(policy.max_redirects))
            .connect_timeout(policy.connect_timeout)
            .user_agent(concat!("nixos-lift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Other(format!("building the HTTP client: {e}")))?;
        Ok(Self { http, policy, base })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// `default` (an IP-literal URL) with the override applied.
    pub fn url(&self, default: &str) -> Result<Url> {
        let mut url = Url::parse(default)
            .map_err(|e| Error::Other(format!("parsing the URL {default}: {e}")))?;
        if let Some(base) = &self.base {
            let prefix = base.path().trim_end_matches('/');
            let path = format!("{prefix}{}", url.path());
            let query = url.query().map(str::to_owned);
            url = base.clone();
            url.set_path(&path);
            url.set_query(query.as_deref());
        }
        Ok(url)
    }

    /// Sends `req`, retrying transient failures until the deadline; returns the response with
    /// its body unread (to stream it), or `None` when the server says 404.
    pub async fn send(
        &self,
        req: &Request,
        deadline: Deadline,
    ) -> Result<Option<reqwest::Response>> {
        match self.run(req, deadline, false).await? {
            Some(Reply::Streaming(resp)) => Ok(Some(resp)),
            _ => Ok(None),
        }
    }

    /// Fetches a whole body (at most `policy.max_body` bytes), retrying transient failures,
    /// including a connection dropped mid-body, until the deadline. `None` means 404.
    pub async fn fetch(&self, req: &Request, deadline: Deadline) -> Result<Option<Body>> {
        match self.run(req, deadline, true).await? {
            Some(Reply::Body(body)) => Ok(Some(body)),
            _ => Ok(None),
        }
    }

    async fn run(
        &self,
        req: &Request,
        deadline: Deadline,
        read_body: bool,
    ) -> Result<Option<Reply>> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let per_request = self.per_request(req, deadline)?;
            let t0 = Instant::now();
            let result = self.attempt(req, per_request, read_body).await;
            let elapsed_ms = t0.elapsed().as_millis() as u64;
            let (after, why) = match result {
                Ok(Step::Done(reply)) => {
                    debug!(method = %req.method, url = %req.url, attempt, status = reply.status(), elapsed_ms, "http");
                    return Ok(Some(reply));
                }
                Ok(Step::Absent) => {
                    debug!(method = %req.method, url = %req.url, attempt, status = 404, elapsed_ms, "http: absent");
                    return Ok(None);
                }
                Ok(Step::Retry { status, after }) => {
                    debug!(method = %req.method, url = %req.url, attempt, status, elapsed_ms, "http: transient status, retrying");
                    (after, format!("HTTP {status}"))
                }
                Err(Failure::Transient(why)) => {
                    debug!(method = %req.method, url = %req.url, attempt, error = %why, elapsed_ms, "http: transient error, retrying");
                    (None, why)
                }
                Err(Failure::Fatal(err)) => {
                    debug!(method = %req.method, url = %req.url, attempt, error = %err, elapsed_ms, "http: fatal");
                    return Err(err);
                }
            };
            self.pause(req, deadline, attempt, after, &why, started)
                .await?;
        }
    }

    /// This attempt's timeout: the policy's, shortened to what the deadline leaves.
    fn per_request(&self, req: &Request, deadline: Deadline) -> Result<Duration> {
        let per_request = self.policy.request_timeout.min(deadline.remaining());
        if per_request.is_zero() {
            return Err(timeout(req, deadline, None));
        }
        Ok(per_request)
    }

    /// Waits before attempt `failures + 1` (the server's `Retry-After`, else backoff), or fails
    /// when the attempts are used up or the deadline leaves no room for another one.
    async fn pause(
        &self,
        req: &Request,
        deadline: Deadline,
        failures: u32,
        after: Option<Duration>,
        why: &str,
        started: Instant,
    ) -> Result<()> {
        if failures >= self.policy.max_attempts {
            return Err(network(req, format!("{why} ({failures} attempts)")));
        }
        let pause = after
            .map(|a| a.min(self.policy.retry_after_max))
            .unwrap_or_else(|| self.policy.backoff(failures - 1));
        if pause >= deadline.remaining() {
            debug!(url = %req.url, attempts = failures, total_ms = started.elapsed().as_millis() as u64, "http: deadline leaves no room for another attempt");
            return Err(timeout(req, deadline, Some(why)));
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// Streams the body of `req` (a GET) to `sink`, at most `max_bytes` of it, resuming with
    /// `Range: bytes=N-` after a transient failure: a dropped connection, a stall longer than
    /// the policy's `stall_timeout`, a transient status. The sink gets every byte once and in
    /// order, so its state (a hasher, a decompressor) simply continues; when a server answers a
    /// resume with the whole body (200), the bytes already delivered are skipped. An attempt that
    /// delivers bytes resets the attempt count. Returns the body's length, or `None` for 404.
    pub async fn stream(
        &self,
        req: &Request,
        deadline: Deadline,
        max_bytes: u64,
        sink: &mut dyn Sink,
    ) -> Result<Option<u64>> {
        let started = Instant::now();
        let mut body = BodyPosition {
            delivered: 0,
            total: None,
        };
        let mut failures: u32 = 0;
        loop {
            let per_request = self.per_request(req, deadline)?;
            let mut ranged = req.clone();
            if body.delivered > 0 {
                ranged = ranged.header("range", &format!("bytes={}-", body.delivered))?;
            }
            let before = body.delivered;
            let result = self
                .stream_attempt(&ranged, per_request, max_bytes, &mut body, sink)
                .await;
            let (after, why) = match result {
                Ok(Step::Done(())) => {
                    debug!(url = %req.url, bytes = body.delivered, total_ms = started.elapsed().as_millis() as u64, "http: body streamed");
                    return Ok(Some(body.delivered));
                }
                Ok(Step::Absent) if body.delivered == 0 => return Ok(None),
                Ok(Step::Absent) => {
                    return Err(network(
                        req,
                        format!("the file vanished (404) after {} bytes", body.delivered),
                    ))
                }
                Ok(Step::Retry { status, after }) => (after, format!("HTTP {status}")),
                Err(Failure::Transient(why)) => (None, why),
                Err(Failure::Fatal(err)) => return Err(err),
            };
            if body.delivered > before {
                failures = 0;
            }
            failures += 1;
            tracing::warn!(url = %req.url, attempt = failures, "downloading: {why}; resuming at byte {}", body.delivered);
            self.pause(req, deadline, failures, after, &why, started)
                .await?;
        }
    }

    async fn stream_attempt(
        &self,
        req: &Request,
        per_request: Duration,
        max_bytes: u64,
        body: &mut BodyPosition,
        sink: &mut dyn Sink,
    ) -> Result<Step<()>, Failure> {
        let mut resp = match self.respond(req, per_request).await? {
            Step::Done(resp) => resp,
            Step::Absent => return Ok(Step::Absent),
            Step::Retry { status, after } => return Ok(Step::Retry { status, after }),
        };
        let mut skip = 0u64;
        if body.delivered > 0 {
            if resp.status() == StatusCode::PARTIAL_CONTENT {
                let range = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !range.starts_with(&format!("bytes {}-", body.delivered)) {
                    return Err(Failure::Fatal(network(
                        req,
                        format!(
                            "asked to resume at byte {}, the server sent {range:?}",
                            body.delivered
                        ),
                    )));
                }
            } else {
                debug!(url = %req.url, "http: the server ignored Range; skipping the bytes already delivered");
                skip = body.delivered;
            }
        }
        if body.total.is_none() {
            if let Some(len) = resp.content_length() {
                let total = len + body.delivered - skip;
                body.total = Some(total);
                sink.length(total);
            }
        }
        if body.total.is_some_and(|t| t > max_bytes) {
            return Err(Failure::Fatal(too_large(req, max_bytes)));
        }
        let stall = self.policy.stall_timeout.min(per_request);
        loop {
            let mut chunk = match tokio::time::timeout(stall, resp.chunk()).await {
                Err(_) => {
                    return Err(Failure::Transient(format!(
                        "no data for {} s",
                        stall.as_secs()
                    )))
                }
                Ok(Err(e)) => return Err(transport(req, &e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = chunk.slice(n as usize..);
                if chunk.is_empty() {
                    continue;
                }
            }
            if body.delivered + chunk.len() as u64 > max_bytes {
                return Err(Failure::Fatal(too_large(req, max_bytes)));
            }
            body.delivered += chunk.len() as u64;
            sink.write(chunk).map_err(Failure::Fatal)?;
        }
        match body.total {
            Some(t) if body.delivered < t => Err(Failure::Transient(format!(
                "connection closed at byte {} of {t}",
                body.delivered
            ))),
            _ => Ok(Step::Done(())),
        }
    }

    async fn attempt(
        &self,
        req: &Request,
        per_request: Duration,
        read_body: bool,
    ) -> Result<Step<Reply>, Failure> {
        let mut resp = match self.respond(req, per_request).await? {
            Step::Done(resp) => resp,
            Step::Absent => return Ok(Step::Absent),
            Step::Retry { status, after } => return Ok(Step::Retry { status, after }),
        };
        if !read_body {
            return Ok(Step::Done(Reply::Streaming(resp)));
        }
        let limit = self.policy.max_body;
        if resp.content_length().is_some_and(|len| len > limit) {
            return Err(Failure::Fatal(too_large(req, limit)));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        loop {
            // reqwest's per-request timeout covers the body too; this bounds a stalled chunk
            // even if that changes.
            let chunk = match tokio::time::timeout(per_request, resp.chunk()).await {
                Err(_) => return Err(Failure::Transient("timed out reading the body".into())),
                Ok(Err(e)) => return Err(transport(req, &e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(Failure::Fatal(too_large(req, limit)));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Step::Done(Reply::Body(Body {
            status: resp.status().as_u16(),
            content_type,
            bytes,
        })))
    }

    /// Sends `req` and classifies the status; the body is left unread.
    async fn respond(
        &self,
        req: &Request,
        per_request: Duration,
    ) -> Result<Step<reqwest::Response>, Failure> {
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(per_request);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let send = tokio::time::timeout(per_request, builder.send());
        let resp = match send.await {
            Err(_) => return Err(Failure::Transient("timed out".into())),
            Ok(Err(e)) => return Err(transport(req, &e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        match classify(status, resp.headers(), req.also_retry) {
            Outcome::Success => Ok(Step::Done(resp)),
            Outcome::Absent => Ok(Step::Absent),
            Outcome::Retry { after } => Ok(Step::Retry {
                status: status.as_u16(),
                after,
            }),
            Outcome::Fatal => Err(Failure::Fatal(Error::Http {
                method: req.method.to_string(),
                url: req.url.to_string(),
                status: status.as_u16(),
            })),
        }
    }
}

enum Reply {
    Streaming(reqwest::Response),
    Body(Body),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Self::Streaming(r) => r.status().as_u16(),
            Self::Body(b) => b.status,
        }
    }
}

enum Step<T> {
    Done(T),
    Absent,
    Retry {
        status: u16,
        after: Option<Duration>,
    },
}

/// How far [`Client::stream`] got: bytes handed to the sink, and the announced length.
struct BodyPosition {
    delivered: u64,
    total: Option<u64>,
}

/// Where [`Client::stream`] delivers a body.
pub trait Sink {
    /// The whole body's length, when the server announces it (once, before the bytes).
    fn length(&mut self, _total: u64) {}
    /// The next bytes of the body.
    fn write(&mut self, chunk: bytes::Bytes) -> Result<()>;
}

/// Follows up to `max` redirects, none from https to http (a downgrade would let anyone on the
/// path serve the body; the digest would catch it, but later and less clearly).
fn redirect_policy(max: usize) -> reqwest::redirect::Policy {
    if max == 0 {
        return reqwest::redirect::Policy::none();
    }
    reqwest::redirect::Policy::custom(move |attempt| {
        match redirect_refusal(attempt.previous(), attempt.url(), max) {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        }
    })
}

/// Why a redirect to `next` after `previous` (the original URL first) is refused, if it is.
fn redirect_refusal(previous: &[Url], next: &Url, max: usize) -> Option<String> {
    if previous.len() > max {
        return Some(format!("more than {max} redirects"));
    }
    let from_https = previous.iter().any(|u| u.scheme() == "https");
    (from_https && next.scheme() != "https")
        .then(|| format!("refusing a redirect from https to {}", next.scheme()))
}

enum Failure {
    Transient(String),
    Fatal(Error),
}

fn transport(req: &Request, err: &reqwest::Error) -> Failure {
    match classify_error(err) {
        Outcome::Fatal => Failure::Fatal(network(
            req,
            tls_failure(err).unwrap_or_else(|| error_chain(err)),
        )),
        _ => Failure::Transient(error_chain(err)),
    }
}

/// reqwest's message plus its causes ("error sending request: connection refused").
fn error_chain(err: &reqwest::Error) -> String {
    let mut msg = err.without_url_ref().to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // The URL is already in the context; reqwest would print it again.
        let s = self.to_string();
        match s.find(" for url (") {
            Some(i) => s[..i].to_owned(),
            None => s,
        }
    }
}

fn timeout(req: &Request, deadline: Deadline, last: Option<&str>) -> Error {
    Error::Timeout {
        what: format!("{} {}", req.method, req.url),
        after: deadline.budget(),
        last: last.map(str::to_owned),
    }
}

fn network(req: &Request, why: String) -> Error {
    Error::Network {
        what: format!("{} {}", req.method, req.url),
        why,
    }
}

fn too_large(req: &Request, limit: u64) -> Error {
    Error::BodyTooLarge {
        url: req.url.to_string(),
        limit,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified_like_curl_retry() {
        let h = headers(None);
        for code in [200, 204] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap(), &h, &[]),
                Outcome::Success
            );
        }
        assert_eq!(classify(StatusCode::NOT_FOUND, &h, &[]), Outcome::Absent);
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap(), &h, &[]),
                Outcome::Retry { after: None },
                "{code}"
            );
        }
        for code in [400, 401, 403, 405, 410, 501] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap(), &h, &[]),
                Outcome::Fatal,
                "{code}"
            );
        }
    }

    #[test]
    fn overrides_and_retry_after() {
        assert_eq!(
            classify(StatusCode::GONE, &headers(None), &[404, 410]),
            Outcome::Retry { after: None }
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers(Some("3")), &[]),
            Outcome::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
                &[]
            ),
            Outcome::Retry { after: None }
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::metadata();
        for attempt in 0..40 {
            let b = p.backoff(attempt);
            assert!(b <= p.backoff_max, "{attempt}: {b:?}");
            assert!(b >= p.backoff_initial / 2);
        }
        assert!(p.backoff(6) >= p.backoff_max / 2);
    }

    #[test]
    fn base_override_replaces_scheme_host_port_and_prefixes_the_path() {
        let base = Url::parse("http://127.0.0.1:8080/run1/").unwrap();
        let c = Client::new(RetryPolicy::metadata(), Some(base)).unwrap();
        let u = c
            .url("http://169.254.169.254/metadata/instance?api-version=2021-08-01")
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/run1/metadata/instance?api-version=2021-08-01"
        );
        let plain = Client::new(RetryPolicy::metadata(), None).unwrap();
        assert_eq!(
            plain
                .url("http://100.100.100.200/latest/meta-data/")
                .unwrap()
                .as_str(),
            "http://100.100.100.200/latest/meta-data/"
        );
    }

    #[test]
    fn redirects_are_capped_and_never_downgrade() {
        let u = |s: &str| Url::parse(s).unwrap();
        let https = u("https://github.com/o/r/releases/download/v1/i.tar.gz");
        let cdn = u("https://objects.githubusercontent.com/x");
        assert_eq!(
            redirect_refusal(std::slice::from_ref(&https), &cdn, 5),
            None
        );
        let plain = u("http://mirror.example/i.tar.gz");
        let err = redirect_refusal(&[https.clone(), cdn.clone()], &plain, 5).unwrap();
        assert!(err.contains("https to http"), "{err}");
        assert_eq!(
            redirect_refusal(std::slice::from_ref(&plain), &plain, 5),
            None
        );
        let hops = vec![https; 6];
        assert!(redirect_refusal(&hops, &cdn, 5)
            .unwrap()
            .contains("more than 5 redirects"));
    }

    #[test]
    fn tls_certificate_errors_are_found_inside_nested_io_errors() {
        // The shape reqwest hands over: io::Error(Other, io::Error(InvalidData, rustls::Error)).
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(
            tls_failure(&wrapped).as_deref(),
            Some("TLS certificate verification failed: invalid peer certificate: UnknownIssuer")
        );
        let reset =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(tls_failure(&reset), None);
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::InternalError,
        ));
        assert_eq!(tls_failure(&alert), None, "an alert may not repeat");
    }

    #[test]
    fn capped_deadline_never_outlives_its_parent() {
        let d = Deadline::after(Duration::from_millis(50));
        assert!(d.capped(Duration::from_secs(5)).remaining() <= Duration::from_millis(50));
        assert!(d.capped(Duration::from_millis(10)).remaining() <= Duration::from_millis(10));
    }
}
