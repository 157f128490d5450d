//! Following the changelog the translator is still writing
//! (`<brick>/.glusterfs/changelogs/CHANGELOG`), so that a worker can replay
//! changes within a second instead of after the rollover.
//!
//! The translator appends one whole record per write, renames the file to
//! `YYYY/MM/DD/CHANGELOG.<ts>` at the rollover (or unlinks it when it holds
//! no record), then lists it in HTIME, then creates the next one. The tail
//! holds the file open across the rename and reads the complete records
//! appended since its last read. When the rolled changelog is read for the
//! feed, its inode tells whether it is the file followed, and so how many
//! of its records the worker has already had.
//!
//! The order matters: the agent opens the file first and reads the index
//! after. A file opened after the rollover of the one before it can only
//! exist once that one is listed, so the index read then shows it and the
//! agent sends it before any live record of the new file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::gluster::changelog::{MAX_RECORD, Record, parse_complete, parse_header};

/// At most this much of the file is read at once (a frame to the worker
/// stays well inside the feed's limit).
pub const READ_MAX: usize = 4 << 20;

/// The name of the changelog being written, in the changelog directory.
pub const CURRENT: &str = "CHANGELOG";

#[derive(Debug)]
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    header: Option<crate::gluster::changelog::Header>,
    /// Bytes read and parsed: the header and whole records.
    offset: u64,
    /// Records handed out.
    sent: u32,
    /// It could not be parsed: nothing more is read from it (its rolled
    /// copy is read in full, and its error reported there).
    broken: bool,
}

/// The tail of one brick's current changelog.
#[derive(Debug)]
pub struct LiveTail {
    path: PathBuf,
    open: Option<Open>,
}

impl LiveTail {
    pub fn new(changelog_root: &Path) -> LiveTail {
        LiveTail { path: changelog_root.join(CURRENT), open: None }
    }

    /// Opens the current changelog unless one is open; none yet is fine.
    pub fn open(&mut self) {
        if self.open.is_some() {
            return;
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                debug!(path = %self.path.display(), "cannot open the current changelog: {e}");
                return;
            }
        };
        match file.metadata() {
            Ok(m) => {
                self.open =
                    Some(Open { file, dev: m.dev(), ino: m.ino(), header: None, offset: 0, sent: 0, broken: false })
            }
            Err(e) => debug!(path = %self.path.display(), "cannot stat the current changelog: {e}"),
        }
    }

    /// Forgets the file followed (a new feed starts from the index).
    pub fn reset(&mut self) {
        self.open = None;
    }

    /// A changelog was rolled over (`id`: its device and inode, `None` for
    /// an empty one, which the translator unlinks): how many of its records
    /// were read here. The tail lets go of the file if it was this one, or
    /// if it was unlinked.
    pub fn rolled(&mut self, id: Option<(u64, u64)>) -> u32 {
        let Some(o) = &self.open else { return 0 };
        if id == Some((o.dev, o.ino)) {
            let n = o.sent;
            self.open = None;
            return n;
        }
        if o.file.metadata().map_or(true, |m| m.nlink() == 0) {
            self.open = None;
        }
        0
    }

    /// The whole records appended since the last read.
    pub fn read(&mut self) -> Vec<Record> {
        let Some(o) = &mut self.open else { return Vec::new() };
        if o.broken {
            return Vec::new();
        }
        let m = match o.file.metadata() {
            Ok(m) => m,
            Err(e) => {
                debug!("cannot stat the current changelog: {e}");
                return Vec::new();
            }
        };
        if m.nlink() == 0 && o.sent == 0 {
            // Rolled over empty and unlinked: the next one is opened later.
            self.open = None;
            return Vec::new();
        }
        if m.len() <= o.offset {
            return Vec::new();
        }
        let want = usize::try_from(m.len() - o.offset).unwrap_or(READ_MAX).min(READ_MAX);
        let mut buf = vec![0; want];
        let mut got = 0;
        while got < want {
            match o.file.read_at(&mut buf[got..], o.offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("cannot read the current changelog: {e}");
                    return Vec::new();
                }
            }
        }
        buf.truncate(got);
        let mut body = &buf[..];
        let header = match o.header {
            Some(h) => h,
            None => {
                let Some(nl) = memchr::memchr(b'\n', body) else {
                    // The translator writes the header right after creating
                    // the file; a header without its end is not there yet.
                    if body.len() >= 256 {
                        o.broken = true;
                        warn!(path = %self.path.display(), "the current changelog has no header; waiting for its rollover");
                    }
                    return Vec::new();
                };
                match parse_header(&body[..=nl]) {
                    Ok(h) => {
                        o.header = Some(h);
                        o.offset += (nl + 1) as u64;
                        body = &body[nl + 1..];
                        h
                    }
                    Err(p) => {
                        o.broken = true;
                        warn!(path = %self.path.display(), "the current changelog cannot be followed ({p}); waiting for its rollover");
                        return Vec::new();
                    }
                }
            }
        };
        match parse_complete(body, &header) {
            Ok((records, used)) => {
                if used == 0 && body.len() >= MAX_RECORD {
                    o.broken = true;
                    warn!(path = %self.path.display(), offset = o.offset, "a record of the current changelog is too large; waiting for its rollover");
                }
                o.offset += used as u64;
                o.sent = o.sent.saturating_add(u32::try_from(records.len()).unwrap_or(u32::MAX));
                records
            }
            Err((at, p)) => {
                o.broken = true;
                warn!(path = %self.path.display(), offset = o.offset + at as u64,
                    "the current changelog cannot be followed ({p}); waiting for its rollover");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::changelog::{Entry, Header, encode_record};
    use crate::gluster::fop::Fop;
    use crate::gluster::uuid::Uuid;
    use std::io::Write;

    fn rec(i: u8) -> Record {
        Record::New {
            gfid: Uuid([i; 16]),
            fop: Fop::CREATE,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            entry: Entry { parent: Uuid::ROOT, name: format!("f{i}").into_bytes() },
        }
    }

    fn bytes(r: &Record) -> Vec<u8> {
        let mut b = Vec::new();
        encode_record(&r.as_ref(), &Header::V1_2_ASCII, &mut b);
        b
    }

    fn id(p: &Path) -> Option<(u64, u64)> {
        let m = std::fs::metadata(p).unwrap();
        Some((m.dev(), m.ino()))
    }

    #[test]
    fn follows_records_as_they_are_written_and_counts_them_at_the_rollover() {
        let d = tempfile::tempdir().unwrap();
        let cur = d.path().join(CURRENT);
        let mut t = LiveTail::new(d.path());
        t.open();
        assert!(t.read().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&cur).unwrap();
        t.open();
        assert!(t.read().is_empty(), "no header yet");
        let h = Header::V1_2_ASCII.encode();
        f.write_all(&h[..10]).unwrap();
        assert!(t.read().is_empty(), "half a header");
        f.write_all(&h[10..]).unwrap();
        f.write_all(&bytes(&rec(1))).unwrap();
        let two = bytes(&rec(2));
        f.write_all(&two[..7]).unwrap();
        assert_eq!(t.read(), [rec(1)]);
        assert!(t.read().is_empty());
        f.write_all(&two[7..]).unwrap();
        f.write_all(&bytes(&rec(3))).unwrap();
        assert_eq!(t.read(), [rec(2), rec(3)]);
        // The rollover: renamed, one more record written just before it.
        f.write_all(&bytes(&rec(4))).unwrap();
        drop(f);
        let rolled = d.path().join("CHANGELOG.100");
        std::fs::rename(&cur, &rolled).unwrap();
        // Another file is not this one.
        let other = d.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(t.rolled(id(&other)), 0);
        assert_eq!(t.rolled(id(&rolled)), 3, "three records were read live; the fourth was not");
        assert!(t.read().is_empty(), "let go of");
        // The next file.
        let mut f = std::fs::File::create(&cur).unwrap();
        f.write_all(&h).unwrap();
        f.write_all(&bytes(&rec(5))).unwrap();
        t.open();
        assert_eq!(t.read(), [rec(5)]);
    }

    #[test]
    fn an_empty_rollover_is_let_go_and_garbage_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let cur = d.path().join(CURRENT);
        std::fs::write(&cur, Header::V1_2_ASCII.encode()).unwrap();
        let mut t = LiveTail::new(d.path());
        t.open();
        assert!(t.read().is_empty());
        std::fs::remove_file(&cur).unwrap();
        assert_eq!(t.rolled(None), 0);
        let mut body = Header::V1_2_ASCII.encode();
        body.extend_from_slice(b"Xgarbage\0");
        std::fs::write(&cur, &body).unwrap();
        t.open();
        assert!(t.read().is_empty());
        std::fs::write(&cur, [&body[..], &bytes(&rec(1))].concat()).unwrap();
        assert!(t.read().is_empty(), "a broken file is left to its rollover");
    }
}
