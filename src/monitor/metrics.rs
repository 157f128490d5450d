//! The monitor's Prometheus endpoint (option `metrics-listen`, off by
//! default): `GET /metrics` over plain HTTP/1.0 answers the session's
//! per-brick numbers in the Prometheus text format, from the same brick
//! statuses the status socket serves, by the same rules as `gsyncd status
//! --json` (a number the status shows as N/A has no sample here).
//!
//! One thread accepts and answers one connection at a time, with short
//! timeouts, so a slow client delays the next scrape a little and never
//! blocks the monitor. It reads only the request line and serves only
//! `GET` and `HEAD`; nothing it is sent changes anything.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::debug;

use crate::proto::status::{self, BrickStatus, LiveStatus};

/// A client gets this long to send its request and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// More than any request line and headers a scraper sends.
const MAX_REQUEST: usize = 8192;

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
}

impl MetricKind {
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        }
    }
}

/// One metric family: its name, type, the `status --json` brick key it
/// carries (empty: none), and its help text.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub json: &'static str,
    pub help: &'static str,
}

const fn m(name: &'static str, kind: MetricKind, json: &'static str, help: &'static str) -> Metric {
    Metric { name, kind, json, help }
}

use MetricKind::{Counter, Gauge};

/// Every metric, in the order they are served (gsyncd-status(8) lists them).
pub static METRICS: &[Metric] = &[
    m("gsyncd_up", Gauge, "", "1 while the session's monitor serves this endpoint."),
    m(
        "gsyncd_brick_status",
        Gauge,
        "status",
        "1 for the brick worker's status (label status), 0 for the other statuses.",
    ),
    m(
        "gsyncd_brick_crawl_status",
        Gauge,
        "crawl_status",
        "1 for the Active brick's crawl (label crawl_status; N/A when the brick is not Active), 0 for the others.",
    ),
    m("gsyncd_brick_lag_seconds", Gauge, "lag_seconds", "Seconds since last_synced (Active bricks with a sync time)."),
    m(
        "gsyncd_brick_last_synced_timestamp_seconds",
        Gauge,
        "last_synced",
        "stime: everything changed before it is on the secondary (Active bricks).",
    ),
    m("gsyncd_brick_last_synced_entry_timestamp_seconds", Gauge, "last_synced_entry", "entry_stime (Active bricks)."),
    m(
        "gsyncd_brick_backlog_changelogs",
        Gauge,
        "backlog_changelogs",
        "Changelogs rolled over on the brick and not yet replayed, beyond the batch in flight (Active bricks).",
    ),
    m("gsyncd_brick_backlog_bytes", Gauge, "backlog_bytes", "Size of those changelogs on disk (Active bricks)."),
    m(
        "gsyncd_brick_files_per_second",
        Gauge,
        "files_per_sec",
        "Files the data phase synced per second over about the last minute (Active bricks).",
    ),
    m(
        "gsyncd_brick_bytes_per_second",
        Gauge,
        "bytes_per_sec",
        "Bytes the data phase synced per second over about the last minute (Active bricks).",
    ),
    m("gsyncd_brick_entry_in_flight", Gauge, "entry", "Entry operations of the batch in flight (Active bricks)."),
    m("gsyncd_brick_data_in_flight", Gauge, "data", "Files to sync in the batch in flight (Active bricks)."),
    m("gsyncd_brick_meta_in_flight", Gauge, "meta", "Metadata operations of the batch in flight (Active bricks)."),
    m("gsyncd_brick_failures", Gauge, "failures", "Items in the brick's failure ledger."),
    m(
        "gsyncd_brick_checkpoint_timestamp_seconds",
        Gauge,
        "checkpoint_time",
        "The configured checkpoint (Active bricks, when one is set).",
    ),
    m(
        "gsyncd_brick_checkpoint_completed",
        Gauge,
        "checkpoint_completed",
        "1 when the brick completed the configured checkpoint, else 0 (Active bricks, when one is set).",
    ),
    m(
        "gsyncd_brick_files_synced_total",
        Counter,
        "files_synced",
        "Files synced by the data phase since the worker started.",
    ),
    m(
        "gsyncd_brick_bytes_synced_total",
        Counter,
        "bytes_synced",
        "Bytes synced by the data phase since the worker started.",
    ),
    m("gsyncd_brick_entry_ops_total", Counter, "entry_ops", "Entry operations replayed since the worker started."),
    m("gsyncd_brick_meta_ops_total", Counter, "meta_ops", "Metadata operations replayed since the worker started."),
    m("gsyncd_brick_restarts_total", Counter, "restarts", "Times the worker was restarted since the session started."),
    m(
        "gsyncd_brick_feed_stalled_since_timestamp_seconds",
        Gauge,
        "feed_stalled_since",
        "Since when the brick's changelog feed is stalled (only while it is).",
    ),
    m(
        "gsyncd_brick_last_error_timestamp_seconds",
        Gauge,
        "last_error_time",
        "When the worker last failed (after its first failure).",
    ),
];

/// The worker statuses and crawls that always get a sample (0 or 1).
const STATUSES: [&str; 5] = [status::INITIALIZING, status::ACTIVE, status::PASSIVE, status::RETRYING, status::FAULTY];
const CRAWLS: [&str; 4] = [status::HISTORY, status::HYBRID, status::CHANGELOG, status::NA];

/// A brick's number for a JSON key, by the rules of `gsyncd status`: the
/// sync fields only for an Active brick, a time only when set, the
/// checkpoint fields only for an Active brick when a checkpoint (the
/// configured one, `checkpoint`) is set.
pub fn value(json: &str, st: &BrickStatus, checkpoint: u64, now: u64) -> Option<u64> {
    let active = st.worker_status == status::ACTIVE;
    let sync = |v: u64| active.then_some(v);
    let set = |v: u64| (v != 0).then_some(v);
    match json {
        "lag_seconds" => sync(st.last_synced).and_then(set).map(|t| now.saturating_sub(t)),
        "last_synced" => sync(st.last_synced).and_then(set),
        "last_synced_entry" => sync(st.last_synced_entry).and_then(set),
        "backlog_changelogs" => sync(st.backlog),
        "backlog_bytes" => sync(st.backlog_bytes),
        "files_per_sec" => sync(st.files_per_sec),
        "bytes_per_sec" => sync(st.bytes_per_sec),
        "entry" => sync(st.entry),
        "data" => sync(st.data),
        "meta" => sync(st.meta),
        "failures" => Some(st.failures),
        "checkpoint_time" => sync(checkpoint).and_then(set),
        "checkpoint_completed" => (active && checkpoint != 0)
            .then(|| u64::from(st.checkpoint_time == checkpoint && st.checkpoint_completed == "Yes")),
        "files_synced" => Some(st.files_synced),
        "bytes_synced" => Some(st.bytes_synced),
        "entry_ops" => Some(st.entry_ops),
        "meta_ops" => Some(st.meta_ops),
        "restarts" => Some(st.restarts),
        "feed_stalled_since" => set(st.feed_stalled_since),
        "last_error_time" => set(st.last_error_time),
        _ => None,
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition of `live`, with the configured checkpoint (0: none).
pub fn render(live: &LiveStatus, checkpoint: u64, now: u64) -> String {
    let session = label(&live.session);
    let bricks: Vec<(String, &BrickStatus)> =
        live.bricks.iter().map(|b| (label(&String::from_utf8_lossy(&b.path)), &b.status)).collect();
    let mut out = String::new();
    for metric in METRICS {
        let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
        let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind.name());
        let mut line = |labels: &str, v: u64| {
            let _ = writeln!(out, "{}{{session=\"{session}\"{labels}}} {v}", metric.name);
        };
        match metric.json {
            "" => line("", 1),
            "status" => {
                for (brick, st) in &bricks {
                    let mut known = STATUSES.to_vec();
                    if !known.contains(&st.worker_status.as_str()) {
                        known.push(&st.worker_status);
                    }
                    for s in known {
                        line(&format!(",brick=\"{brick}\",status=\"{}\"", label(s)), u64::from(s == st.worker_status));
                    }
                }
            }
            "crawl_status" => {
                for (brick, st) in &bricks {
                    let crawl = if st.worker_status == status::ACTIVE { st.crawl_status.as_str() } else { status::NA };
                    let mut known = CRAWLS.to_vec();
                    if !known.contains(&crawl) {
                        known.push(crawl);
                    }
                    for c in known {
                        line(&format!(",brick=\"{brick}\",crawl_status=\"{}\"", label(c)), u64::from(c == crawl));
                    }
                }
            }
            key => {
                for (brick, st) in &bricks {
                    if let Some(v) = value(key, st, checkpoint, now) {
                        line(&format!(",brick=\"{brick}\""), v);
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics-listen {0:?} is not an IP address and port")]
    Address(String),
    #[error("cannot listen on {addr} (metrics-listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The listening endpoint; dropping it stops its thread and closes the
/// port.
#[derive(Debug)]
pub struct MetricsServer {
    /// What `metrics-listen` said (to notice a change).
    pub listen: String,
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept: a connection to the port itself.
        let ip = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let woke = TcpStream::connect_timeout(&SocketAddr::new(ip, self.addr.port()), IO_TIMEOUT).is_ok();
        if let Some(t) = self.thread.take()
            && woke
        {
            let _ = t.join();
        }
    }
}

/// Listens on `listen` and answers scrapes with `body()` from a thread.
pub fn serve(listen: &str, body: impl Fn() -> String + Send + 'static) -> Result<MetricsServer, MetricsError> {
    let addr: SocketAddr = listen.parse().map_err(|_| MetricsError::Address(listen.to_owned()))?;
    let listener = TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| MetricsError::Bind { addr, source })?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &body) {
                            debug!("metrics client: {e}");
                        }
                    }
                    // Out of fds, say: do not spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|source| MetricsError::Bind { addr, source })?;
    Ok(MetricsServer { listen: listen.to_owned(), addr, stop, thread: Some(thread) })
}

/// Reads the request head (up to its blank line), answers, closes.
fn answer(mut s: TcpStream, body: &dyn Fn() -> String) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        if req.len() > MAX_REQUEST {
            break;
        }
    }
    let (code, reason, text) = respond(&req, body);
    let head_only = req.starts_with(b"HEAD ");
    let mut out = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        if code == 200 { CONTENT_TYPE } else { "text/plain; charset=utf-8" },
        text.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&text);
    }
    s.write_all(out.as_bytes())?;
    s.flush()
}

/// Status code, reason and body for a request head.
fn respond(req: &[u8], body: &dyn Fn() -> String) -> (u16, &'static str, String) {
    let first = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut words = first.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, "OK", body()),
        ("GET" | "HEAD", _) => (404, "Not Found", "gsyncd serves /metrics only\n".into()),
        _ => (405, "Method Not Allowed", "only GET and HEAD\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::status::row;
    use crate::proto::status::{LIVE_STATUS_VERSION, LiveBrick};

    fn active() -> BrickStatus {
        BrickStatus {
            worker_status: status::ACTIVE.into(),
            crawl_status: status::CHANGELOG.into(),
            last_synced: 1_000,
            last_synced_entry: 990,
            entry: 3,
            data: 2,
            meta: 1,
            failures: 4,
            checkpoint_time: 900,
            checkpoint_completed: "Yes".into(),
            checkpoint_completion_time: 950,
            restarts: 2,
            files_synced: 10,
            bytes_synced: 4096,
            entry_ops: 7,
            meta_ops: 5,
            last_error: "boom".into(),
            last_error_time: 800,
            backlog: 6,
            ..BrickStatus::default()
        }
    }

    /// The numbers are those of `gsyncd status --json` for the same status
    /// (a running session), key by key, null for no sample.
    #[test]
    fn numbers_match_status_json() {
        let passive = BrickStatus { worker_status: status::PASSIVE.into(), ..active() };
        let faulty = BrickStatus { worker_status: status::FAULTY.into(), feed_stalled_since: 700, ..active() };
        let fresh = BrickStatus { worker_status: status::ACTIVE.into(), ..BrickStatus::default() };
        for st in [active(), passive, faulty, fresh] {
            for checkpoint in [0, 900, 1_200] {
                let json =
                    serde_json::to_value(row("n", b"/b", Some(0), st.clone(), "Started", checkpoint, 1_060)).unwrap();
                for metric in METRICS.iter().filter(|m| !["", "status", "crawl_status"].contains(&m.json)) {
                    let want = match &json[metric.json] {
                        serde_json::Value::Bool(b) => Some(u64::from(*b)),
                        v => v.as_u64(),
                    };
                    assert!(json.get(metric.json).is_some(), "{} is no status --json key", metric.json);
                    assert_eq!(
                        value(metric.json, &st, checkpoint, 1_060),
                        want,
                        "{} of {} with checkpoint {checkpoint}",
                        metric.name,
                        st.worker_status
                    );
                }
            }
        }
    }

    #[test]
    fn exposition_has_types_labels_and_state_sets() {
        let live = LiveStatus {
            version: LIVE_STATUS_VERSION,
            session: "prod".into(),
            pid: 1,
            monitor_status: "Started".into(),
            bricks: vec![
                LiveBrick { path: b"/b/1".to_vec(), subvol: Some(0), status: active() },
                LiveBrick {
                    path: b"/b/\"2\"".to_vec(),
                    subvol: Some(1),
                    status: BrickStatus { worker_status: status::PASSIVE.into(), ..active() },
                },
            ],
        };
        let text = render(&live, 900, 1_060);
        let lines: Vec<&str> = text.lines().collect();
        for metric in METRICS {
            assert!(
                lines.contains(&format!("# TYPE {} {}", metric.name, metric.kind.name()).as_str()),
                "{}",
                metric.name
            );
        }
        for want in [
            "gsyncd_up{session=\"prod\"} 1",
            "gsyncd_brick_status{session=\"prod\",brick=\"/b/1\",status=\"Active\"} 1",
            "gsyncd_brick_status{session=\"prod\",brick=\"/b/1\",status=\"Passive\"} 0",
            "gsyncd_brick_status{session=\"prod\",brick=\"/b/\\\"2\\\"\",status=\"Passive\"} 1",
            "gsyncd_brick_crawl_status{session=\"prod\",brick=\"/b/1\",crawl_status=\"Changelog Crawl\"} 1",
            "gsyncd_brick_crawl_status{session=\"prod\",brick=\"/b/\\\"2\\\"\",crawl_status=\"N/A\"} 1",
            "gsyncd_brick_lag_seconds{session=\"prod\",brick=\"/b/1\"} 60",
            "gsyncd_brick_checkpoint_completed{session=\"prod\",brick=\"/b/1\"} 1",
            "gsyncd_brick_bytes_synced_total{session=\"prod\",brick=\"/b/1\"} 4096",
            "gsyncd_brick_failures{session=\"prod\",brick=\"/b/\\\"2\\\"\"} 4",
        ] {
            assert!(lines.contains(&want), "no {want} in\n{text}");
        }
        assert!(!text.contains("gsyncd_brick_lag_seconds{session=\"prod\",brick=\"/b/\\\"2\\\"\"}"), "{text}");
    }

    #[test]
    fn serves_get_and_head_refuses_the_rest_and_stops() {
        let server = serve("127.0.0.1:0", || "x_total 1\n".to_owned()).unwrap();
        let port = server.addr.port();
        let ask = |req: &str| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut a = String::new();
            s.read_to_string(&mut a).unwrap();
            a
        };
        let a = ask("GET /metrics HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 200 OK\r\n"), "{a}");
        assert!(a.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{a}");
        assert!(a.ends_with("\r\n\r\nx_total 1\n"), "{a}");
        let a = ask("GET /metrics?name[]=x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 200 OK\r\n") && a.contains("Content-Length: 10\r\n"), "{a}");
        let a = ask("HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 200 OK\r\n") && a.ends_with("\r\n\r\n"), "{a}");
        assert!(ask("GET / HTTP/1.0\n\n").starts_with("HTTP/1.0 404 Not Found\r\n"));
        let a = ask("POST /metrics HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 405 ") && a.contains("Allow: GET, HEAD\r\n"), "{a}");
        // A client that sends nothing and goes away.
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
        assert!(ask("GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the port is closed once dropped");
        assert!(matches!(serve("localhost:1", String::new), Err(MetricsError::Address(_))));
    }
}
