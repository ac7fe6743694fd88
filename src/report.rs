//! Progress events: one line per phase on the serial console, `/dev/kmsg` and the journal,
//! and optionally a webhook and (on GCP) the guest attribute `nixos-lift/status`.
//!
//! The remote sinks run on one background thread with a bounded queue and the HTTP policy of
//! [`RetryPolicy::report`] (a per-request timeout, few attempts), so a dead receiver never
//! blocks or fails the install. Stage 1 uses the same [`Reporter`] with `stage: 1`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::Serialize;

use crate::config::{HttpUrl, Secret};
use crate::http::{Client, Deadline, Request, RetryPolicy};
use crate::{Error, Result};

/// Where a GCP VM publishes guest attributes; readable with
/// `gcloud compute instances get-guest-attributes --query-path=nixos-lift/`.
pub const GCP_METADATA_BASE: &str = "http://169.254.169.254";
const GCP_STATUS_PATH: &str = "/computeMetadata/v1/instance/guest-attributes/nixos-lift/status";

/// Events the remote queue holds before it drops new ones (the console still gets them).
const QUEUE_LEN: usize = 64;
/// All attempts at one event to one target ([`RetryPolicy::report`] makes at most 3 of 5 s).
const EVENT_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A phase started.
    Running,
    /// The whole stage finished.
    Done,
    /// The stage stopped at this phase.
    Failed,
}

/// One progress event, as the webhook receives it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// 1 in the stock image, 2 in the installer.
    pub stage: u8,
    pub phase: String,
    pub step: u32,
    pub total: u32,
    pub status: Status,
    pub message: String,
    /// On `failed`: what went wrong, as the console line says it.
    pub error: Option<String>,
    /// On `failed`: the error's stable reason (`network`, `subprocess`, a guard's name, ...),
    /// for a consumer that acts on the cause without parsing `error`.
    pub reason: Option<String>,
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
    /// Seconds since the Unix epoch.
    pub time: u64,
}

impl Event {
    /// The console line: `nixos-lift: [3/7] partitioning /dev/vda (disko) ...`.
    pub fn line(&self) -> String {
        match self.status {
            Status::Running => format!(
                "nixos-lift: [{}/{}] {} ...",
                self.step, self.total, self.message
            ),
            Status::Done => format!("nixos-lift: done: {}", self.message),
            Status::Failed => format!(
                "nixos-lift: failed at [{}/{}] {}: {}",
                self.step,
                self.total,
                self.phase,
                self.error.as_deref().unwrap_or(&self.message)
            ),
        }
    }
}

/// Somewhere a line of text goes: the console, `/dev/kmsg`, a test's buffer.
pub trait LineSink: Send {
    fn write_line(&mut self, line: &str);
}

/// A character device or file opened per line, so a console that appears late (or a
/// `/dev/kmsg` that refuses a write) costs one line, not the install.
pub struct DeviceSink {
    path: PathBuf,
    /// `/dev/kmsg` wants a syslog priority prefix.
    kmsg: bool,
}

impl DeviceSink {
    pub fn console(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kmsg: false,
        }
    }

    pub fn kmsg(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kmsg: true,
        }
    }
}

impl LineSink for DeviceSink {
    fn write_line(&mut self, line: &str) {
        let text = if self.kmsg {
            // <6> is KERN_INFO; kmsg takes one record per write.
            format!("<6>{line}\n")
        } else {
            format!("{line}\r\n")
        };
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.path) {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// A sink that keeps lines in memory, for tests and for the failure banner's log tail.
#[derive(Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<String>>>);

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl LineSink for MemorySink {
    fn write_line(&mut self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line.to_string());
        }
    }
}

/// Where events go besides the local sinks.
#[derive(Debug, Clone, Default)]
pub struct RemoteTargets {
    pub webhook_url: Option<HttpUrl>,
    pub webhook_token: Option<Secret>,
    /// Metadata server base for the GCP guest attribute; `None` off GCP.
    pub gcp_metadata_base: Option<String>,
}

/// Sends events to the console, the journal and the remote targets.
pub struct Reporter {
    stage: u8,
    instance_id: Option<String>,
    hostname: Option<String>,
    sinks: Vec<Box<dyn LineSink>>,
    /// Log lines under [`PROGRESS_TARGET`], which the text log prints bare (stage 1).
    bare_log_lines: bool,
    remote: Option<RemoteQueue>,
    /// Events from before the remote targets were known (stage 1 learns the cloud in its first
    /// phase); they are sent first once [`Reporter::start_remote`] knows where to. `None` after.
    held: Option<Vec<Event>>,
}

/// The log target of progress lines that the text log prints as they are, without level or
/// fields: stage 1's stderr is its console, and its lines keep the documented shape there.
pub const PROGRESS_TARGET: &str = "nixos_lift::progress";

impl Reporter {
    pub fn new(stage: u8, sinks: Vec<Box<dyn LineSink>>) -> Self {
        Self {
            stage,
            instance_id: None,
            hostname: None,
            sinks,
            bare_log_lines: false,
            remote: None,
            held: Some(Vec::new()),
        }
    }

    /// The real console and kernel log.
    pub fn system_sinks() -> Vec<Box<dyn LineSink>> {
        vec![
            Box::new(DeviceSink::console("/dev/console")),
            Box::new(DeviceSink::kmsg("/dev/kmsg")),
        ]
    }

    /// Progress lines go to the log as they are (see [`PROGRESS_TARGET`]): for stage 1, whose
    /// stderr is the console (cloud-init's output, the systemd unit's `journal+console`).
    pub fn with_bare_log_lines(mut self) -> Self {
        self.bare_log_lines = true;
        self
    }

    pub fn with_identity(mut self, instance_id: Option<String>, hostname: Option<String>) -> Self {
        self.set_identity(instance_id, hostname);
        self
    }

    pub fn set_identity(&mut self, instance_id: Option<String>, hostname: Option<String>) {
        self.instance_id = instance_id;
        self.hostname = hostname;
    }

    /// Starts the background sender when there is anywhere to send to. It holds the events
    /// until [`Reporter::network_ready`] (or [`Reporter::finish`]): in the installer the first
    /// events come before the network is restored, and would be lost to quick retries.
    pub fn with_remote(mut self, targets: RemoteTargets) -> Self {
        self.start_remote(targets);
        self
    }

    /// As [`Reporter::with_remote`]; the events held so far go first, with this reporter's
    /// identity where they had none.
    pub fn start_remote(&mut self, targets: RemoteTargets) {
        let held = self.held.take().unwrap_or_default();
        if self.remote.is_some()
            || (targets.webhook_url.is_none() && targets.gcp_metadata_base.is_none())
        {
            return;
        }
        self.remote = RemoteQueue::start(targets);
        if let Some(remote) = &self.remote {
            for mut event in held {
                event.instance_id = event.instance_id.or_else(|| self.instance_id.clone());
                event.hostname = event.hostname.or_else(|| self.hostname.clone());
                remote.push(event);
            }
        }
    }

    /// The network is up: queued and later events go out now.
    pub fn network_ready(&mut self) {
        if let Some(remote) = &mut self.remote {
            remote.open();
        }
    }

    /// Writes a line to every local sink and the journal, without an event.
    pub fn line(&mut self, line: &str) {
        if self.bare_log_lines {
            tracing::info!(target: PROGRESS_TARGET, "{line}");
        } else {
            tracing::info!("{line}");
        }
        for sink in &mut self.sinks {
            sink.write_line(line);
        }
    }

    /// Logs and queues one event.
    pub fn event(
        &mut self,
        phase: &str,
        step: u32,
        total: u32,
        status: Status,
        message: &str,
        error: Option<&Error>,
    ) {
        let event = Event {
            stage: self.stage,
            phase: phase.to_string(),
            step,
            total,
            status,
            message: message.to_string(),
            error: error.map(ToString::to_string),
            reason: error.map(|e| e.reason().to_string()),
            instance_id: self.instance_id.clone(),
            hostname: self.hostname.clone(),
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let line = event.line();
        match (status, self.bare_log_lines) {
            (Status::Failed, true) => tracing::error!(target: PROGRESS_TARGET, "{line}"),
            (_, true) => tracing::info!(target: PROGRESS_TARGET, "{line}"),
            (Status::Failed, false) => tracing::error!(phase, step, total, "{line}"),
            (_, false) => tracing::info!(phase, step, total, "{line}"),
        }
        for sink in &mut self.sinks {
            sink.write_line(&line);
        }
        match (&self.remote, &mut self.held) {
            (Some(remote), _) => remote.push(event),
            (None, Some(held)) if held.len() < QUEUE_LEN => held.push(event),
            _ => {}
        }
    }

    /// Waits up to `deadline` for the events queued so far to be delivered (or given up on),
    /// and keeps the queue open for later ones.
    pub fn flush(&mut self, deadline: Duration) {
        if let Some(remote) = &mut self.remote {
            remote.open();
            remote.flush(deadline);
        }
    }

    /// Waits up to `deadline` for queued events to be delivered, then gives up on them.
    pub fn finish(mut self, deadline: Duration) {
        if let Some(remote) = self.remote.take() {
            remote.finish(deadline);
        }
    }
}

/// What the background sender takes, in order.
enum Item {
    Event(Box<Event>),
    /// Answered when every earlier item is done.
    Flush(mpsc::Sender<()>),
}

struct RemoteQueue {
    tx: SyncSender<Item>,
    /// Sending on it (or dropping it) lets the worker start delivering.
    gate: Option<mpsc::Sender<()>>,
    done: Receiver<()>,
    worker: JoinHandle<()>,
}

impl RemoteQueue {
    fn start(targets: RemoteTargets) -> Option<Self> {
        let client = match Client::new(RetryPolicy::report(), None) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("progress events not sent remotely: {e}");
                return None;
            }
        };
        let (tx, rx) = mpsc::sync_channel::<Item>(QUEUE_LEN);
        let (gate, gate_rx) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("report".into())
            .spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    // Either a signal or the gate's sender dropped: both mean go.
                    let _ = gate_rx.recv();
                    // In order: the next event waits for the previous one's retries.
                    while let Ok(item) = rx.recv() {
                        match item {
                            Item::Event(event) => rt.block_on(deliver(&client, &targets, &event)),
                            Item::Flush(reply) => {
                                let _ = reply.send(());
                            }
                        }
                    }
                }
                let _ = done_tx.send(());
            })
            .ok()?;
        Some(Self {
            tx,
            gate: Some(gate),
            done,
            worker,
        })
    }

    fn open(&mut self) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.send(());
        }
    }

    fn push(&self, event: Event) {
        if let Err(TrySendError::Full(Item::Event(e))) = self.tx.try_send(Item::Event(event.into()))
        {
            tracing::warn!(
                phase = e.phase,
                "progress queue full; event not sent remotely"
            );
        }
    }

    fn flush(&self, deadline: Duration) {
        let (reply, answered) = mpsc::channel();
        if self.tx.try_send(Item::Flush(reply)).is_err() || answered.recv_timeout(deadline).is_err()
        {
            tracing::warn!(
                "progress events still undelivered after {}s; going on without them",
                deadline.as_secs()
            );
        }
    }

    fn finish(mut self, deadline: Duration) {
        self.open();
        drop(self.tx);
        match self.done.recv_timeout(deadline) {
            Ok(()) => {
                let _ = self.worker.join();
            }
            Err(_) => tracing::warn!(
                "progress events still undelivered after {}s; not waiting longer",
                deadline.as_secs()
            ),
        }
    }
}

async fn deliver(client: &Client, targets: &RemoteTargets, event: &Event) {
    if let Some(url) = &targets.webhook_url {
        let req =
            Request::post_json(url.to_url(), event).and_then(|req| match &targets.webhook_token {
                Some(token) => {
                    req.secret_header("authorization", &format!("Bearer {}", token.expose()))
                }
                None => Ok(req),
            });
        send(client, "webhook", req).await;
    }
    if let Some(base) = &targets.gcp_metadata_base {
        let url = format!("{}{GCP_STATUS_PATH}", base.trim_end_matches('/'));
        let value = match event.status {
            Status::Running => format!("{}/{} {}", event.step, event.total, event.phase),
            Status::Done => "done".to_string(),
            Status::Failed => format!("failed {}", event.phase),
        };
        let req = Url::parse(&url)
            .map_err(|e| Error::Other(format!("parsing the URL {url}: {e}")))
            .and_then(|url| Request::put(url).header("metadata-flavor", "Google"))
            .map(|req| req.body(value));
        send(client, "guest attribute", req).await;
    }
}

/// One event to one target, with the report policy's retries; failures are logged, never
/// returned (the token is a sensitive header, which no error or log line prints).
async fn send(client: &Client, what: &str, req: Result<Request>) {
    let result = match req {
        Ok(req) => client
            .fetch(&req, Deadline::after(EVENT_DEADLINE))
            .await
            .map(|body| body.is_some()),
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!("progress {what}: the receiver answered 404; event not sent"),
        Err(e) => tracing::warn!("progress {what}: event not sent: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(status: Status) -> Event {
        Event {
            stage: 2,
            phase: "partition".into(),
            step: 3,
            total: 7,
            status,
            message: "partitioning /dev/vda (disko)".into(),
            error: (status == Status::Failed).then(|| "disko exited 1".into()),
            reason: (status == Status::Failed).then(|| "subprocess".into()),
            instance_id: None,
            hostname: None,
            time: 0,
        }
    }

    #[test]
    fn console_lines_follow_the_documented_shape() {
        assert_eq!(
            event(Status::Running).line(),
            "nixos-lift: [3/7] partitioning /dev/vda (disko) ..."
        );
        assert_eq!(
            event(Status::Failed).line(),
            "nixos-lift: failed at [3/7] partition: disko exited 1"
        );
        assert!(event(Status::Done).line().starts_with("nixos-lift: done: "));
    }

    #[test]
    fn events_reach_every_local_sink() {
        let mem = MemorySink::default();
        let mut r = Reporter::new(2, vec![Box::new(mem.clone())]);
        r.event("network", 1, 7, Status::Running, "restoring", None);
        r.line("plain");
        assert_eq!(
            mem.lines(),
            vec!["nixos-lift: [1/7] restoring ...", "plain"]
        );
    }
}
