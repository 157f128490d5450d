//! A brick's replication status, as the worker reports it to the
//! supervisor (ctl), the supervisor relays it to the monitor, and the
//! monitor writes it to the reference's `brick_<quoted path>.status` file.
//!
//! The first fields are the reference's (same names and meanings, so
//! existing tools that read the files keep working); the rest are ours.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `worker_status` values.
pub const INITIALIZING: &str = "Initializing...";
pub const ACTIVE: &str = "Active";
pub const PASSIVE: &str = "Passive";
pub const FAULTY: &str = "Faulty";
/// Failed and restarting after a backoff (not yet at the backoff cap,
/// where it is Faulty: needs attention).
pub const RETRYING: &str = "Retrying";
/// `crawl_status` values.
pub const HYBRID: &str = "Hybrid Crawl";
pub const HISTORY: &str = "History Crawl";
pub const CHANGELOG: &str = "Changelog Crawl";
pub const NA: &str = "N/A";

/// Missing fields take their defaults, so a file written by an older
/// version (or with fields added later) still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrickStatus {
    /// The secondary host the worker syncs to.
    pub secondary_node: String,
    /// Initializing..., Active, Passive, Retrying or Faulty.
    pub worker_status: String,
    /// stime (seconds): everything changed before it is on the secondary.
    pub last_synced: u64,
    /// entry_stime (seconds).
    pub last_synced_entry: u64,
    /// Hybrid Crawl, History Crawl, Changelog Crawl or N/A.
    pub crawl_status: String,
    /// Entry, data and metadata operations of the batch in flight.
    pub entry: u64,
    pub data: u64,
    pub meta: u64,
    /// Items in the failure ledger (unsynced, retried with every batch).
    pub failures: u64,
    /// The configured checkpoint (0: none).
    pub checkpoint_time: u64,
    /// N/A, No or Yes.
    pub checkpoint_completed: String,
    pub checkpoint_completion_time: u64,
    // Ours from here.
    /// Changelogs the brick holds that the feed has not delivered, oldest
    /// first: set while the live feed is stalled (0: not stalled).
    pub feed_stalled_since: u64,
    /// The last error that stopped the worker, and when (0: none).
    pub last_error: String,
    pub last_error_time: u64,
    /// What the worker was doing when it failed.
    pub failed_phase: String,
    /// Times the worker was restarted since the session started.
    pub restarts: u64,
    /// Files and bytes synced by the data phase since the worker started.
    pub files_synced: u64,
    pub bytes_synced: u64,
    /// Entry and metadata operations replayed since the worker started.
    pub entry_ops: u64,
    pub meta_ops: u64,
    /// When this status was written (seconds).
    pub updated: u64,
    /// Changelogs rolled over on the brick and not yet replayed, beyond
    /// the batch in flight.
    pub backlog: u64,
    /// Their size on disk.
    pub backlog_bytes: u64,
    /// Files and bytes the data phase synced per second, over about the
    /// last minute.
    pub files_per_sec: u64,
    pub bytes_per_sec: u64,
}

impl Default for BrickStatus {
    fn default() -> BrickStatus {
        BrickStatus {
            secondary_node: NA.into(),
            worker_status: NA.into(),
            last_synced: 0,
            last_synced_entry: 0,
            crawl_status: NA.into(),
            entry: 0,
            data: 0,
            meta: 0,
            failures: 0,
            checkpoint_time: 0,
            checkpoint_completed: NA.into(),
            checkpoint_completion_time: 0,
            feed_stalled_since: 0,
            last_error: String::new(),
            last_error_time: 0,
            failed_phase: String::new(),
            restarts: 0,
            files_synced: 0,
            bytes_synced: 0,
            entry_ops: 0,
            meta_ops: 0,
            updated: 0,
            backlog: 0,
            backlog_bytes: 0,
            files_per_sec: 0,
            bytes_per_sec: 0,
        }
    }
}

/// The monitor's status socket in the session's run directory: a client
/// connects, the monitor writes one [`LiveStatus`] as JSON and closes (it
/// reads nothing from the client).
pub const STATUS_SOCKET: &str = "status.sock";

/// The version of [`LiveStatus`]; a client refuses another one.
pub const LIVE_STATUS_VERSION: u32 = 1;

/// Where the monitor of a session with this run directory listens.
pub fn status_socket(run_dir: &Path) -> PathBuf {
    run_dir.join(STATUS_SOCKET)
}

/// What the monitor's status socket serves: the session's current status,
/// as the monitor knows it from the workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// [`LIVE_STATUS_VERSION`].
    pub version: u32,
    pub session: String,
    /// The monitor's pid.
    pub pid: u32,
    /// What it wrote to `monitor.status` (`Started`).
    pub monitor_status: String,
    /// The bricks of the current plan, in volume order, then any other brick
    /// a status arrived for.
    pub bricks: Vec<LiveBrick>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveBrick {
    /// The brick path (bytes).
    pub path: Vec<u8>,
    /// Its replica/disperse set, when the brick is in the plan.
    pub subvol: Option<u32>,
    pub status: BrickStatus,
}

/// The checkpoint state for a configured `checkpoint` (0: none), given the
/// brick's stime and the oldest change still in the failure ledger: a
/// checkpoint is complete once stime has passed it **and** nothing changed
/// before it is left unsynced.
pub fn checkpoint_state(checkpoint: u64, stime: u64, oldest_unsynced: Option<u64>) -> &'static str {
    if checkpoint == 0 {
        NA
    } else if stime >= checkpoint && oldest_unsynced.is_none_or(|t| t > checkpoint) {
        "Yes"
    } else {
        "No"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_needs_stime_and_an_empty_ledger_before_it() {
        assert_eq!(checkpoint_state(0, 100, None), NA);
        assert_eq!(checkpoint_state(100, 99, None), "No");
        assert_eq!(checkpoint_state(100, 100, None), "Yes");
        assert_eq!(checkpoint_state(100, 200, Some(50)), "No", "an older failure holds it");
        assert_eq!(checkpoint_state(100, 200, Some(150)), "Yes", "a later failure does not");
    }

    #[test]
    fn json_has_the_reference_keys() {
        let v = serde_json::to_value(BrickStatus::default()).unwrap();
        for k in [
            "secondary_node",
            "worker_status",
            "last_synced",
            "last_synced_entry",
            "crawl_status",
            "entry",
            "data",
            "meta",
            "failures",
            "checkpoint_time",
            "checkpoint_completed",
            "checkpoint_completion_time",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let b = postcard::to_stdvec(&BrickStatus::default()).unwrap();
        assert_eq!(postcard::from_bytes::<BrickStatus>(&b).unwrap(), BrickStatus::default());
    }

    #[test]
    fn files_with_fewer_fields_still_read() {
        let st: BrickStatus = serde_json::from_str(r#"{"worker_status":"Active","last_synced":5}"#).unwrap();
        assert_eq!(st.worker_status, ACTIVE);
        assert_eq!(st.last_synced, 5);
        assert_eq!(st.crawl_status, NA);
    }

    #[test]
    fn live_status_round_trips_with_byte_paths() {
        let live = LiveStatus {
            version: LIVE_STATUS_VERSION,
            session: "s".into(),
            pid: 1,
            monitor_status: "Started".into(),
            bricks: vec![LiveBrick { path: b"/b/\xff".to_vec(), subvol: Some(0), status: BrickStatus::default() }],
        };
        let j = serde_json::to_vec(&live).unwrap();
        assert_eq!(serde_json::from_slice::<LiveStatus>(&j).unwrap(), live);
        assert_eq!(status_socket(Path::new("/run/gsyncd/s")), Path::new("/run/gsyncd/s/status.sock"));
    }
}
