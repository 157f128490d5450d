//! The HTIME index of a brick's changelogs (reference §5.1): files
//! `<changelog dir>/htime/HTIME.<ts>` holding the NUL-terminated absolute
//! paths of every rolled-over changelog in order (lower-case
//! `changelog.<ts>` for an empty one), and the history lookup "which
//! changelogs cover [start, end]" with the reference library's outcomes.

use std::fs;
use std::path::{Path, PathBuf};

use super::changelog::name_ts;
use super::xattr::{decode_htime, keys};

#[derive(Debug, thiserror::Error)]
pub enum HtimeError {
    #[error("{}: cannot read: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: byte {offset}: {problem}", .path.display())]
    Format { path: PathBuf, offset: usize, problem: String },
}

/// One changelog an HTIME file lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtimeEntry {
    /// The absolute path as recorded (bytes).
    pub path: Vec<u8>,
    /// End of the interval the changelog covers (its rollover time).
    pub ts: u64,
    /// The changelog held no records and was removed at rollover.
    pub empty: bool,
}

/// Parses the contents of an HTIME file. A partial last entry (no NUL yet,
/// as while the translator appends) is ignored.
pub fn parse_entries(content: &[u8]) -> Result<Vec<HtimeEntry>, (usize, String)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut rest = content;
    while let Some(n) = memchr::memchr(0, rest) {
        let path = &rest[..n];
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let (ts, empty) = name_ts(base)
            .ok_or_else(|| (at, format!("{:?} is not a changelog path", String::from_utf8_lossy(path))))?;
        if let Some(prev) = out.last().map(|e: &HtimeEntry| e.ts)
            && ts < prev
        {
            return Err((at, format!("timestamps go backwards ({prev} then {ts})")));
        }
        out.push(HtimeEntry { path: path.to_vec(), ts, empty });
        at += n + 1;
        rest = &rest[n + 1..];
    }
    Ok(out)
}

/// One HTIME file with its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtimeFile {
    pub path: PathBuf,
    /// From the name `HTIME.<ts>`: when the index was started.
    pub created: u64,
    /// `trusted.glusterfs.htime`: ts of the last rollover and entry count,
    /// when the xattr is readable.
    pub xattr: Option<(u64, u64)>,
    pub entries: Vec<HtimeEntry>,
}

impl HtimeFile {
    /// The newest time this index covers: the xattr's, else the last entry's.
    pub fn max_ts(&self) -> u64 {
        match self.xattr {
            Some((ts, _)) if ts > 0 => ts,
            _ => self.entries.last().map_or(self.created, |e| e.ts),
        }
    }
}

/// What a history request can be served with (the reference's return
/// values 0, 1 and -2 of `gf_history_changelog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// Changelogs cover the whole range.
    Full { changelogs: Vec<HtimeEntry>, actual_end: u64 },
    /// They cover it only up to `actual_end` (the brick was idle or changelog
    /// was off later); the caller continues with live changelogs.
    Partial { changelogs: Vec<HtimeEntry>, actual_end: u64 },
    /// No index covers `start`: a full (hybrid) crawl is needed.
    NotAvailable { start: u64, indexes: Vec<(u64, u64)> },
}

/// Slack the reference allows between the requested end and the last
/// rollover before calling the answer partial (seconds).
pub const PARTIAL_SLACK: u64 = 20;

/// Chooses the changelogs for [start, end] from `files` (any order), as
/// libgfchangelog's `gf_history_changelog` does:
///
/// - the index used is the first whose span `[created, max_ts)` contains
///   `start`;
/// - the first changelog taken is the first with a rollover time `>= start`,
///   the last is the first with a rollover time `>= min(end, max_ts)` (so
///   the one that covers `end` is included), and `actual_end` is its time;
/// - the answer is partial when `end - 20 > max_ts`;
/// - empty (lower-case) changelogs count in the index but are not returned.
///
/// One deliberate difference: the reference computes `end - 20` unsigned and
/// wraps for `end < 20`; here it saturates.
pub fn select(files: &[HtimeFile], start: u64, end: u64) -> History {
    let Some(f) = files.iter().find(|f| f.created <= start && start < f.max_ts()) else {
        let mut indexes: Vec<(u64, u64)> = files.iter().map(|f| (f.created, f.max_ts())).collect();
        indexes.sort_unstable();
        return History::NotAvailable { start, indexes };
    };
    let max_ts = f.max_ts();
    let until = end.min(max_ts);
    let n = f.entries.len();
    let from = f.entries.partition_point(|e| e.ts < start);
    let to = f.entries.partition_point(|e| e.ts < until).min(n.saturating_sub(1));
    let selected: &[HtimeEntry] = if from < n && from <= to { &f.entries[from..=to] } else { &[] };
    let actual_end = selected.last().map_or(until, |e| e.ts);
    let changelogs = selected.iter().filter(|e| !e.empty).cloned().collect();
    if end.saturating_sub(PARTIAL_SLACK) > max_ts {
        History::Partial { changelogs, actual_end }
    } else {
        History::Full { changelogs, actual_end }
    }
}

/// A brick's changelog directory (`<brick>/.glusterfs/changelogs`).
#[derive(Debug, Clone)]
pub struct ChangelogDir {
    pub root: PathBuf,
}

impl ChangelogDir {
    /// For a brick path, or the changelog directory itself.
    pub fn new(path: &Path) -> ChangelogDir {
        let nested = path.join(".glusterfs/changelogs");
        if nested.is_dir() { ChangelogDir { root: nested } } else { ChangelogDir { root: path.to_owned() } }
    }

    pub fn htime_dir(&self) -> PathBuf {
        self.root.join("htime")
    }

    /// `trusted.glusterfs.current_htime` of the htime directory.
    pub fn current_htime(&self) -> Option<String> {
        let v = xattr_get(&self.htime_dir(), keys::CURRENT_HTIME)?;
        Some(String::from_utf8_lossy(v.strip_suffix(b"\0").unwrap_or(&v)).into_owned())
    }

    /// The HTIME files by creation time, oldest first: (created, path).
    pub fn htime_names(&self) -> Result<Vec<(u64, PathBuf)>, HtimeError> {
        let dir = self.htime_dir();
        let rd = fs::read_dir(&dir).map_err(|source| HtimeError::Io { path: dir.clone(), source })?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|source| HtimeError::Io { path: dir.clone(), source })?;
            let name = e.file_name();
            if let Some(created) = name.to_str().and_then(|n| n.strip_prefix("HTIME.")).and_then(|t| t.parse().ok()) {
                out.push((created, e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every HTIME file, oldest first.
    pub fn htime_files(&self) -> Result<Vec<HtimeFile>, HtimeError> {
        let mut out = Vec::new();
        for (created, path) in self.htime_names()? {
            let content = fs::read(&path).map_err(|source| HtimeError::Io { path: path.clone(), source })?;
            let entries = parse_entries(&content).map_err(|(offset, problem)| HtimeError::Format {
                path: path.clone(),
                offset,
                problem,
            })?;
            let xattr = xattr_get(&path, keys::HTIME).and_then(|v| decode_htime(&v).ok());
            out.push(HtimeFile { path, created, xattr, entries });
        }
        Ok(out)
    }

    /// The history lookup for [start, end].
    pub fn history(&self, start: u64, end: u64) -> Result<History, HtimeError> {
        Ok(select(&self.htime_files()?, start, end))
    }

    /// Where a listed changelog is now: its recorded path if it exists,
    /// else the same name in this directory in either brick layout
    /// (`CHANGELOG.<ts>`, or `YYYY/MM/DD/CHANGELOG.<ts>` by UTC date), so an
    /// index survives a moved brick.
    pub fn locate(&self, e: &HtimeEntry) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let recorded = PathBuf::from(std::ffi::OsStr::from_bytes(&e.path));
        if recorded.is_file() {
            return Some(recorded);
        }
        let name = format!("CHANGELOG.{}", e.ts);
        let (y, m, d) = civil_from_days(e.ts / 86_400);
        [self.root.join(format!("{y:04}/{m:02}/{d:02}")).join(&name), self.root.join(&name)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// The rolled-over changelogs on disk with `after < ts < before`, oldest
    /// first, found by listing the date directories (at most the last
    /// three days before `before`) and the flat layout: the truth the index
    /// should agree with. Names are `CHANGELOG.<ts>`, or `changelog.<ts>`
    /// for an empty one; a file appears under its name only once renamed,
    /// so a listed file is whole.
    pub fn rolled_between(&self, after: u64, before: u64) -> Vec<HtimeEntry> {
        use std::os::unix::ffi::OsStrExt;
        let first_day = (after / 86_400).max((before / 86_400).saturating_sub(2));
        let mut dirs: Vec<PathBuf> = (first_day..=before / 86_400)
            .map(|day| {
                let (y, m, d) = civil_from_days(day);
                self.root.join(format!("{y:04}/{m:02}/{d:02}"))
            })
            .collect();
        dirs.push(self.root.clone());
        let mut out: Vec<HtimeEntry> = Vec::new();
        for dir in dirs {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let n = name.as_bytes();
                let (empty, ts) = match (n.strip_prefix(b"CHANGELOG."), n.strip_prefix(b"changelog.")) {
                    (Some(ts), _) => (false, ts),
                    (_, Some(ts)) => (true, ts),
                    _ => continue,
                };
                let Some(ts) = std::str::from_utf8(ts).ok().and_then(|t| t.parse::<u64>().ok()) else { continue };
                if after < ts && ts < before {
                    out.push(HtimeEntry { path: e.path().as_os_str().as_bytes().to_vec(), ts, empty });
                }
            }
        }
        out.sort_by_key(|e| e.ts);
        out.dedup_by_key(|e| e.ts);
        out
    }
}

/// Follows a brick's HTIME index as the translator appends to it: each
/// [`poll`](HtimeTail::poll) returns the entries added since the last one,
/// also across a switch to a newer HTIME file (changelog turned off and on),
/// reading only the bytes appended. An entry is taken only once its NUL is
/// written, and the translator appends it only after the changelog file is
/// complete and renamed, so a listed changelog is whole.
#[derive(Debug, Clone)]
pub struct HtimeTail {
    dir: ChangelogDir,
    /// The file being followed (its creation time) and how far it was read.
    at: Option<(u64, u64)>,
    /// Moved on to a newer file whose first entry is not read yet.
    pending_switch: bool,
    /// Rollover times of the first entries of newer files: changelog was
    /// off before each (a span without journal).
    switches: Vec<u64>,
}

impl HtimeTail {
    pub fn new(dir: ChangelogDir) -> HtimeTail {
        HtimeTail { dir, at: None, pending_switch: false, switches: Vec::new() }
    }

    /// The first entries of newer index files read since the last call: a
    /// span before each was not journaled.
    pub fn take_switches(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.switches)
    }

    /// New entries, oldest first.
    pub fn poll(&mut self) -> Result<Vec<HtimeEntry>, HtimeError> {
        use std::io::{Read, Seek, SeekFrom};
        let names = self.dir.htime_names()?;
        let mut out = Vec::new();
        for (created, path) in names {
            let from = match self.at {
                Some((c, _)) if created < c => continue,
                Some((c, off)) if created == c => off,
                Some(_) => {
                    self.pending_switch = true;
                    0
                }
                None => 0,
            };
            let io = |source| HtimeError::Io { path: path.clone(), source };
            let mut f = fs::File::open(&path).map_err(io)?;
            f.seek(SeekFrom::Start(from)).map_err(io)?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io)?;
            let consumed = buf.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
            let entries = parse_entries(&buf[..consumed]).map_err(|(offset, problem)| HtimeError::Format {
                path: path.clone(),
                offset: offset + from as usize,
                problem,
            })?;
            if self.pending_switch
                && let Some(first) = entries.first()
            {
                self.switches.push(first.ts);
                self.pending_switch = false;
            }
            out.extend(entries);
            self.at = Some((created, from + consumed as u64));
        }
        Ok(out)
    }
}

/// Reads an xattr (without following symlinks); `None` when absent or
/// unreadable.
fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).ok().flatten()
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(u64, bool)]) -> Vec<HtimeEntry> {
        list.iter()
            .map(|&(ts, empty)| HtimeEntry {
                path: format!("/b/.glusterfs/changelogs/{}.{ts}", if empty { "changelog" } else { "CHANGELOG" })
                    .into_bytes(),
                ts,
                empty,
            })
            .collect()
    }

    fn file(created: u64, list: &[(u64, bool)]) -> HtimeFile {
        let e = entries(list);
        let last = e.last().map_or(created, |x| x.ts);
        HtimeFile {
            path: PathBuf::from(format!("HTIME.{created}")),
            created,
            xattr: Some((last, e.len() as u64)),
            entries: e,
        }
    }

    #[test]
    fn parses_entries_including_empty_ones() {
        let c = b"/b/.glusterfs/changelogs/2026/11/23/CHANGELOG.100\0/b/.glusterfs/changelogs/changelog.115\0/b/x/CHANGELOG.130\0/b/partial";
        let e = parse_entries(c).unwrap();
        assert_eq!(
            e.iter().map(|x| (x.ts, x.empty)).collect::<Vec<_>>(),
            vec![(100, false), (115, true), (130, false)]
        );
        assert!(parse_entries(b"/b/CHANGELOG.5\0/b/CHANGELOG.4\0").is_err());
        let (at, msg) = parse_entries(b"/b/CHANGELOG.5\0/b/notes.txt\0").unwrap_err();
        assert_eq!(at, 15);
        assert!(msg.contains("notes.txt"));
    }

    #[test]
    fn full_partial_and_unavailable() {
        let f = file(90, &[(100, false), (115, true), (130, false), (145, false)]);
        let files = vec![f];
        match select(&files, 100, 140) {
            History::Full { changelogs, actual_end } => {
                // 145 covers (130, 145], so it holds changes up to 140.
                assert_eq!(changelogs.iter().map(|e| e.ts).collect::<Vec<_>>(), vec![100, 130, 145]);
                assert_eq!(actual_end, 145);
            }
            h => panic!("{h:?}"),
        }
        match select(&files, 101, 1000) {
            History::Partial { changelogs, actual_end } => {
                assert_eq!(changelogs.iter().map(|e| e.ts).collect::<Vec<_>>(), vec![130, 145]);
                assert_eq!(actual_end, 145);
            }
            h => panic!("{h:?}"),
        }
        // Within the slack the answer is still full.
        assert!(matches!(select(&files, 101, 160), History::Full { .. }));
        assert!(matches!(select(&files, 50, 100), History::NotAvailable { .. }));
        assert!(matches!(select(&files, 145, 200), History::NotAvailable { .. }));
    }

    #[test]
    fn picks_the_index_that_covers_start() {
        let files = vec![file(10, &[(20, false), (30, false)]), file(100, &[(110, false), (120, false)])];
        match select(&files, 105, 110) {
            History::Full { changelogs, .. } => {
                assert_eq!(changelogs.iter().map(|e| e.ts).collect::<Vec<_>>(), vec![110]);
            }
            h => panic!("{h:?}"),
        }
        // The gap between the two indexes (changelog was off) is not covered.
        assert!(matches!(select(&files, 50, 60), History::NotAvailable { .. }));
    }

    #[test]
    fn locates_both_brick_layouts() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join(".glusterfs/changelogs");
        fs::create_dir_all(root.join("2026/11/23")).unwrap();
        fs::create_dir_all(root.join("htime")).unwrap();
        let dated = root.join("2026/11/23/CHANGELOG.1795469966");
        let flat = root.join("CHANGELOG.1700000000");
        fs::write(&dated, b"x").unwrap();
        fs::write(&flat, b"x").unwrap();
        let dir = ChangelogDir::new(d.path());
        assert_eq!(dir.root, root);
        // Recorded paths from another location (a moved brick) are found by name.
        let moved = |ts: u64| HtimeEntry { path: format!("/old/brick/CHANGELOG.{ts}").into_bytes(), ts, empty: false };
        assert_eq!(dir.locate(&moved(1_795_469_966)), Some(dated.clone()));
        assert_eq!(dir.locate(&moved(1_700_000_000)), Some(flat));
        assert_eq!(dir.locate(&moved(1_700_000_001)), None);
        let recorded = HtimeEntry { path: dated.as_os_str().as_encoded_bytes().to_vec(), ts: 1, empty: false };
        assert_eq!(dir.locate(&recorded), Some(dated));
        // An HTIME file on disk is read with its entries.
        fs::write(root.join("htime/HTIME.1700000000"), b"/b/CHANGELOG.1700000000\0/b/changelog.1700000015\0").unwrap();
        let files = dir.htime_files().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].created, 1_700_000_000);
        assert_eq!(files[0].entries.len(), 2);
        assert_eq!(files[0].max_ts(), 1_700_000_015);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(1_795_469_966 / 86_400), (2026, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
