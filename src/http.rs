//! The one HTTP client policy: every request has a connect and a per-request timeout inside an
//! overall [`Deadline`], only transient failures are retried (capped, jittered backoff), 404 means
//! absent, bodies are capped while they stream, and there is no proxy and no redirect.
//!
//! Metadata reads use [`RetryPolicy::metadata`] with [`Client::fetch`]; downloads use their own
//! policy (long timeouts) with [`Client::send`] and stream the [`reqwest::Response`] to a sink.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
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
        }
    }

    /// Large downloads streamed to a sink: long per-request timeout, no body cap here (the
    /// caller caps what it writes).
    pub fn download() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
            max_body: u64::MAX,
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

/// Connection errors and timeouts are transient; a malformed request is not.
pub fn classify_error(err: &reqwest::Error) -> Outcome {
    if err.is_builder() || err.is_redirect() {
        Outcome::Fatal
    } else {
        Outcome::Retry { after: None }
    }
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
}

impl Request {
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: Vec::new(),
            also_retry: &[],
        }
    }

    pub fn put(url: Url) -> Self {
        Self {
            method: Method::PUT,
            ..Self::get(url)
        }
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
            .redirect(reqwest::redirect::Policy::none())
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
            let per_request = self.policy.request_timeout.min(deadline.remaining());
            if per_request.is_zero() {
                return Err(timeout(req, deadline));
            }
            let t0 = Instant::now();
            let result = self.attempt(req, per_request, read_body).await;
            let elapsed_ms = t0.elapsed().as_millis() as u64;
            let after = match result {
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
                    after
                }
                Err(Failure::Transient(why)) => {
                    debug!(method = %req.method, url = %req.url, attempt, error = %why, elapsed_ms, "http: transient error, retrying");
                    None
                }
                Err(Failure::Fatal(err)) => {
                    debug!(method = %req.method, url = %req.url, attempt, error = %err, elapsed_ms, "http: fatal");
                    return Err(err);
                }
            };
            let pause = after
                .map(|a| a.min(self.policy.retry_after_max))
                .unwrap_or_else(|| self.policy.backoff(attempt - 1));
            if pause >= deadline.remaining() {
                debug!(url = %req.url, attempts = attempt, total_ms = started.elapsed().as_millis() as u64, "http: deadline leaves no room for another attempt");
                return Err(timeout(req, deadline));
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(
        &self,
        req: &Request,
        per_request: Duration,
        read_body: bool,
    ) -> Result<Step, Failure> {
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(per_request);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let send = tokio::time::timeout(per_request, builder.send());
        let resp = match send.await {
            Err(_) => return Err(Failure::Transient("timed out".into())),
            Ok(Err(e)) => return Err(transport(req, &e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        match classify(status, resp.headers(), req.also_retry) {
            Outcome::Success => {}
            Outcome::Absent => return Ok(Step::Absent),
            Outcome::Retry { after } => {
                return Ok(Step::Retry {
                    status: status.as_u16(),
                    after,
                })
            }
            Outcome::Fatal => {
                return Err(Failure::Fatal(Error::Http {
                    method: req.method.to_string(),
                    url: req.url.to_string(),
                    status: status.as_u16(),
                }))
            }
        }
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
        let mut resp = resp;
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
            status: status.as_u16(),
            content_type,
            bytes,
        })))
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

enum Step {
    Done(Reply),
    Absent,
    Retry {
        status: u16,
        after: Option<Duration>,
    },
}

enum Failure {
    Transient(String),
    Fatal(Error),
}

fn transport(req: &Request, err: &reqwest::Error) -> Failure {
    match classify_error(err) {
        Outcome::Fatal => Failure::Fatal(Error::Other(format!(
            "{} {}: {}",
            req.method,
            req.url,
            error_chain(err)
        ))),
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

fn timeout(req: &Request, deadline: Deadline) -> Error {
    Error::Timeout {
        what: format!("{} {}", req.method, req.url),
        after: deadline.budget(),
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
    fn capped_deadline_never_outlives_its_parent() {
        let d = Deadline::after(Duration::from_millis(50));
        assert!(d.capped(Duration::from_secs(5)).remaining() <= Duration::from_millis(50));
        assert!(d.capped(Duration::from_millis(10)).remaining() <= Duration::from_millis(10));
    }
}
