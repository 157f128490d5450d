//! Raw brick changelogs, as the `features/changelog` translator writes them
//! (reference §5.1), and their "processed" one-line-per-record form as
//! libgfchangelog writes it for consumers (§5.2).
//!
//! The reader streams: it holds one buffer of at most [`MAX_RECORD`] bytes
//! beyond what it has parsed, whatever the file size. Every error names the
//! file and the byte offset; no input makes it panic.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use memchr::memchr;

use super::escape::escape_into;
use super::fop::Fop;
use super::uuid::{CANONICAL_LEN, Gfid, Uuid};

/// Largest record the reader accepts: an UNLINK with a name (255 bytes) and
/// a full deleted path (PATH_MAX 4096), with room to spare.
pub const MAX_RECORD: usize = 64 * 1024;

/// The text every changelog file starts with.
pub const HEADER_PREFIX: &[u8] = b"GlusterFS Changelog | version: v";

/// Record encodings (the translator's `encoding` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    /// 1: raw GFIDs and native-endian integers.
    Binary,
    /// 2: canonical GFIDs and decimal text (the default).
    Ascii,
}

impl Encoding {
    pub fn number(self) -> u32 {
        match self {
            Encoding::Binary => 1,
            Encoding::Ascii => 2,
        }
    }
}

/// The header of a changelog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    pub major: u32,
    pub minor: u32,
    pub encoding: Encoding,
}

impl Header {
    pub const V1_2_ASCII: Header = Header { major: 1, minor: 2, encoding: Encoding::Ascii };

    /// v1.2 added the deleted path to UNLINK and RMDIR.
    pub fn has_delete_path(&self) -> bool {
        (self.major, self.minor) >= (1, 2)
    }

    pub fn encode(&self) -> Vec<u8> {
        format!(
            "GlusterFS Changelog | version: v{}.{} | encoding : {}\n",
            self.major,
            self.minor,
            self.encoding.number()
        )
        .into_bytes()
    }
}

/// A `<parent gfid>/<name>` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub parent: Gfid,
    pub name: &'a [u8],
}

/// The arguments of an entry (E) record, by fop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryArgs<'a> {
    /// CREATE, MKNOD, MKDIR. `mode` is the full st_mode for MKDIR (S_IFDIR
    /// added by the translator) and as given by the caller otherwise; uid
    /// and gid are the caller's.
    New { mode: u32, uid: u32, gid: u32, entry: EntryRef<'a> },
    /// UNLINK, RMDIR. `path` is the deleted path (v1.2 with
    /// `changelog.capture-del-path on`), empty otherwise.
    Delete { entry: EntryRef<'a>, path: &'a [u8] },
    /// RENAME.
    Rename { from: EntryRef<'a>, to: EntryRef<'a> },
    /// LINK (the new name of an existing inode), SYMLINK (target not
    /// recorded).
    Link { entry: EntryRef<'a> },
}

/// One record, borrowing names from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRef<'a> {
    /// File data changed (write, truncate).
    Data { gfid: Gfid },
    /// Metadata changed (setattr, xattr fops).
    Meta { gfid: Gfid, fop: Fop },
    /// A namespace operation.
    Entry { gfid: Gfid, fop: Fop, args: EntryArgs<'a> },
}

/// An owned entry field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub parent: Gfid,
    pub name: Vec<u8>,
}

/// An owned record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Record {
    Data { gfid: Gfid },
    Meta { gfid: Gfid, fop: Fop },
    New { gfid: Gfid, fop: Fop, mode: u32, uid: u32, gid: u32, entry: Entry },
    Delete { gfid: Gfid, fop: Fop, entry: Entry, path: Vec<u8> },
    Rename { gfid: Gfid, from: Entry, to: Entry },
    Link { gfid: Gfid, fop: Fop, entry: Entry },
}

fn own(e: EntryRef<'_>) -> Entry {
    Entry { parent: e.parent, name: e.name.to_vec() }
}

fn borrow(e: &Entry) -> EntryRef<'_> {
    EntryRef { parent: e.parent, name: &e.name }
}

impl RecordRef<'_> {
    pub fn gfid(&self) -> Gfid {
        match self {
            RecordRef::Data { gfid } | RecordRef::Meta { gfid, .. } | RecordRef::Entry { gfid, .. } => *gfid,
        }
    }

    pub fn to_owned_record(&self) -> Record {
        match *self {
            RecordRef::Data { gfid } => Record::Data { gfid },
            RecordRef::Meta { gfid, fop } => Record::Meta { gfid, fop },
            RecordRef::Entry { gfid, fop, args } => match args {
                EntryArgs::New { mode, uid, gid, entry } => {
                    Record::New { gfid, fop, mode, uid, gid, entry: own(entry) }
                }
                EntryArgs::Delete { entry, path } => {
                    Record::Delete { gfid, fop, entry: own(entry), path: path.to_vec() }
                }
                EntryArgs::Rename { from, to } => Record::Rename { gfid, from: own(from), to: own(to) },
                EntryArgs::Link { entry } => Record::Link { gfid, fop, entry: own(entry) },
            },
        }
    }
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::Data { gfid } => RecordRef::Data { gfid: *gfid },
            Record::Meta { gfid, fop } => RecordRef::Meta { gfid: *gfid, fop: *fop },
            Record::New { gfid, fop, mode, uid, gid, entry } => RecordRef::Entry {
                gfid: *gfid,
                fop: *fop,
                args: EntryArgs::New { mode: *mode, uid: *uid, gid: *gid, entry: borrow(entry) },
            },
            Record::Delete { gfid, fop, entry, path } => {
                RecordRef::Entry { gfid: *gfid, fop: *fop, args: EntryArgs::Delete { entry: borrow(entry), path } }
            }
            Record::Rename { gfid, from, to } => RecordRef::Entry {
                gfid: *gfid,
                fop: Fop::RENAME,
                args: EntryArgs::Rename { from: borrow(from), to: borrow(to) },
            },
            Record::Link { gfid, fop, entry } => {
                RecordRef::Entry { gfid: *gfid, fop: *fop, args: EntryArgs::Link { entry: borrow(entry) } }
            }
        }
    }
}

/// The argument layout of an entry fop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    New,
    Delete,
    Rename,
    Link,
}

fn entry_shape(fop: Fop) -> Option<Shape> {
    match fop {
        Fop::CREATE | Fop::MKNOD | Fop::MKDIR => Some(Shape::New),
        Fop::UNLINK | Fop::RMDIR => Some(Shape::Delete),
        Fop::RENAME => Some(Shape::Rename),
        Fop::LINK | Fop::SYMLINK => Some(Shape::Link),
        _ => None,
    }
}

/// What went wrong, without the file and offset (see [`ChangelogError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    BadHeader(String),
    UnknownType(u8),
    BadGfid,
    BadNumber(String),
    UnknownEntryFop(u32),
    BadEntry(String),
    MissingTerminator,
    RecordTooLarge,
    Truncated,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadHeader(s) => write!(f, "not a changelog header: {s:?}"),
            Problem::UnknownType(b) => write!(f, "unknown record type {:?}", char::from(*b)),
            Problem::BadGfid => f.write_str("invalid GFID"),
            Problem::BadNumber(s) => write!(f, "invalid number {s:?}"),
            Problem::UnknownEntryFop(n) => write!(f, "fop {n} is not an entry operation"),
            Problem::BadEntry(s) => write!(f, "invalid <pgfid>/<name> field {s:?}"),
            Problem::MissingTerminator => f.write_str("field is not NUL-terminated"),
            Problem::RecordTooLarge => write!(f, "record longer than {MAX_RECORD} bytes"),
            Problem::Truncated => f.write_str("file ends inside a record"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("{}: cannot read: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: byte {offset}: {problem}", .path.display())]
    Format { path: PathBuf, offset: u64, problem: Problem },
}

/// Outcome of parsing at one position of a buffer.
enum Step<'a> {
    Record(RecordRef<'a>, usize),
    /// More bytes are needed.
    Incomplete,
}

/// A cursor over one record's bytes.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    /// The bytes up to the next NUL (consumed with it); `None` if the NUL
    /// is beyond the buffer.
    fn field(&mut self) -> Option<&'a [u8]> {
        let rest = &self.b[self.at..];
        let n = memchr(0, rest)?;
        self.at += n + 1;
        Some(&rest[..n])
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
}

fn parse_u32_text(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 11 {
        return None;
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v * 10 + u64::from(d - b'0');
    }
    if neg {
        // "%d" of a value above i32::MAX: take the two's complement back.
        let v = i64::try_from(v).ok()?;
        i32::try_from(-v).ok().map(|x| x as u32)
    } else {
        u32::try_from(v).ok()
    }
}

fn num(s: &[u8], at: usize) -> Result<u32, (usize, Problem)> {
    parse_u32_text(s).ok_or_else(|| (at, Problem::BadNumber(String::from_utf8_lossy(s).into_owned())))
}

fn ascii_entry(s: &[u8], at: usize) -> Result<EntryRef<'_>, (usize, Problem)> {
    let bad = || (at, Problem::BadEntry(String::from_utf8_lossy(s).into_owned()));
    if s.len() < CANONICAL_LEN + 2 || s[CANONICAL_LEN] != b'/' {
        return Err(bad());
    }
    let parent = Uuid::parse(&s[..CANONICAL_LEN]).map_err(|_| bad())?;
    let name = &s[CANONICAL_LEN + 1..];
    if name.contains(&b'/') {
        return Err(bad());
    }
    Ok(EntryRef { parent, name })
}

/// A field decoded, `None` when the buffer ends before it does, or an
/// error at an offset within the record.
type Got<T> = Result<Option<T>, (usize, Problem)>;

/// How one encoding writes the fields of a record. Both encodings share the
/// record layout ([`parse_record`]); only these differ.
trait Fields {
    /// The record's GFID, right after the type byte.
    fn gfid(c: &mut Cur<'_>) -> Got<Gfid>;
    /// An integer field with its NUL.
    fn int(c: &mut Cur<'_>) -> Got<u32>;
    /// A `<parent gfid>/<name>` field with its NUL.
    fn entry<'a>(c: &mut Cur<'a>) -> Got<EntryRef<'a>>;
}

/// Encoding 2: canonical GFIDs, decimal numbers.
struct Ascii;
/// Encoding 1: 16 raw GFID bytes, native-endian 4-byte integers.
struct Binary;

impl Fields for Ascii {
    fn gfid(c: &mut Cur<'_>) -> Got<Gfid> {
        let at = c.at;
        let Some(g) = c.take(CANONICAL_LEN) else { return Ok(None) };
        Uuid::parse(g).map(Some).map_err(|_| (at, Problem::BadGfid))
    }
    fn int(c: &mut Cur<'_>) -> Got<u32> {
        let at = c.at;
        let Some(f) = c.field() else { return Ok(None) };
        num(f, at).map(Some)
    }
    fn entry<'a>(c: &mut Cur<'a>) -> Got<EntryRef<'a>> {
        let at = c.at;
        let Some(f) = c.field() else { return Ok(None) };
        ascii_entry(f, at).map(Some)
    }
}

impl Fields for Binary {
    fn gfid(c: &mut Cur<'_>) -> Got<Gfid> {
        let at = c.at;
        let Some(g) = c.take(16) else { return Ok(None) };
        Uuid::from_bytes(g).map(Some).map_err(|_| (at, Problem::BadGfid))
    }
    fn int(c: &mut Cur<'_>) -> Got<u32> {
        let at = c.at;
        match c.take(5) {
            Some(s) if s[4] == 0 => Ok(Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))),
            Some(_) => Err((at + 4, Problem::MissingTerminator)),
            None => Ok(None),
        }
    }
    fn entry<'a>(c: &mut Cur<'a>) -> Got<EntryRef<'a>> {
        let at = c.at;
        let Some(p) = c.take(17) else { return Ok(None) };
        let parent = Uuid::from_bytes(&p[..16]).map_err(|_| (at, Problem::BadGfid))?;
        if p[16] != b'/' {
            return Err((at + 16, Problem::BadEntry(String::from_utf8_lossy(p).into_owned())));
        }
        let Some(name) = c.field() else { return Ok(None) };
        if name.is_empty() || name.contains(&b'/') {
            return Err((at + 17, Problem::BadEntry(String::from_utf8_lossy(name).into_owned())));
        }
        Ok(Some(EntryRef { parent, name }))
    }
}

/// The deleted-path field of a v1.2 UNLINK/RMDIR: a NUL-terminated path, or,
/// when no path was captured, an empty field and the extra NUL the
/// translator writes in its place.
fn delete_path<'a>(c: &mut Cur<'a>) -> Got<&'a [u8]> {
    let at = c.at;
    let Some(p) = c.field() else { return Ok(None) };
    if p.is_empty() {
        match c.take(1) {
            Some([0]) => {}
            Some(_) => return Err((at + 1, Problem::MissingTerminator)),
            None => return Ok(None),
        }
    }
    Ok(Some(p))
}

/// Parses one record at the start of `b`: the type byte, the GFID, a NUL,
/// then the fields of the record kind and fop, each NUL-terminated.
fn parse_record<'a, F: Fields>(b: &'a [u8], h: &Header) -> Result<Step<'a>, (usize, Problem)> {
    macro_rules! need {
        ($e:expr) => {
            match $e? {
                Some(v) => v,
                None => return Ok(Step::Incomplete),
            }
        };
    }
    let Some(&ty) = b.first() else { return Ok(Step::Incomplete) };
    if !matches!(ty, b'D' | b'M' | b'E') {
        return Err((0, Problem::UnknownType(ty)));
    }
    let mut c = Cur { b, at: 1 };
    let gfid = need!(F::gfid(&mut c));
    match c.take(1) {
        Some([0]) => {}
        Some(_) => return Err((c.at - 1, Problem::MissingTerminator)),
        None => return Ok(Step::Incomplete),
    }
    let rec = match ty {
        b'D' => RecordRef::Data { gfid },
        b'M' => RecordRef::Meta { gfid, fop: Fop(need!(F::int(&mut c))) },
        _ => {
            let at = c.at;
            let fop = Fop(need!(F::int(&mut c)));
            let shape = entry_shape(fop).ok_or((at, Problem::UnknownEntryFop(fop.0)))?;
            let args = match shape {
                Shape::New => {
                    let mode = need!(F::int(&mut c));
                    let uid = need!(F::int(&mut c));
                    let gid = need!(F::int(&mut c));
                    EntryArgs::New { mode, uid, gid, entry: need!(F::entry(&mut c)) }
                }
                Shape::Delete => {
                    let entry = need!(F::entry(&mut c));
                    let path: &[u8] = if h.has_delete_path() { need!(delete_path(&mut c)) } else { b"" };
                    EntryArgs::Delete { entry, path }
                }
                Shape::Rename => {
                    let from = need!(F::entry(&mut c));
                    EntryArgs::Rename { from, to: need!(F::entry(&mut c)) }
                }
                Shape::Link => EntryArgs::Link { entry: need!(F::entry(&mut c)) },
            };
            RecordRef::Entry { gfid, fop, args }
        }
    };
    Ok(Step::Record(rec, c.at))
}

/// Parses a header line (without reading further).
pub fn parse_header(line: &[u8]) -> Result<Header, Problem> {
    let bad = || Problem::BadHeader(String::from_utf8_lossy(line).into_owned());
    let rest = line.strip_prefix(HEADER_PREFIX).ok_or_else(bad)?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let text = std::str::from_utf8(rest).map_err(|_| bad())?;
    let (ver, enc) = text.split_once(" | encoding : ").ok_or_else(bad)?;
    let (maj, min) = ver.split_once('.').ok_or_else(bad)?;
    let encoding = match enc.trim() {
        "1" => Encoding::Binary,
        "2" => Encoding::Ascii,
        _ => return Err(bad()),
    };
    let major = maj.parse().map_err(|_| bad())?;
    let minor = min.parse().map_err(|_| bad())?;
    if major != 1 {
        return Err(bad());
    }
    Ok(Header { major, minor, encoding })
}

/// A streaming reader of one changelog file.
#[derive(Debug)]
pub struct Reader<R> {
    src: R,
    path: PathBuf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    pub header: Header,
}

const CHUNK: usize = 64 * 1024;

impl Reader<File> {
    pub fn open(path: &Path) -> Result<Reader<File>, ChangelogError> {
        let f = File::open(path).map_err(|source| ChangelogError::Io { path: path.to_owned(), source })?;
        Reader::new(f, path.to_owned())
    }
}

impl<R: Read> Reader<R> {
    /// Reads the header; `path` names the source in errors.
    pub fn new(src: R, path: PathBuf) -> Result<Reader<R>, ChangelogError> {
        let mut r = Reader {
            src,
            path,
            buf: vec![0; MAX_RECORD + CHUNK],
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            header: Header::V1_2_ASCII,
        };
        loop {
            if let Some(nl) = memchr(b'\n', &r.buf[..r.end]) {
                r.header = parse_header(&r.buf[..=nl]).map_err(|p| r.err(0, p))?;
                r.start = nl + 1;
                r.offset = (nl + 1) as u64;
                return Ok(r);
            }
            if r.end >= 256 || r.eof {
                let line = r.buf[..r.end.min(80)].to_vec();
                return Err(r.err(0, Problem::BadHeader(String::from_utf8_lossy(&line).into_owned())));
            }
            r.fill()?;
        }
    }

    fn err(&self, offset: u64, problem: Problem) -> ChangelogError {
        ChangelogError::Format { path: self.path.clone(), offset, problem }
    }

    /// Reads more bytes after `end`. The buffer is `MAX_RECORD + CHUNK`
    /// bytes; the unparsed tail moves to the front only when the free space
    /// after it is smaller than a chunk, so each byte is moved at most once.
    fn fill(&mut self) -> Result<(), ChangelogError> {
        if self.buf.len() - self.end < CHUNK && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ChangelogError::Io { path: self.path.clone(), source });
                }
            }
        }
    }

    /// Buffers at least `MAX_RECORD` bytes past `start`, or the rest of the
    /// file: then a record that does not parse completely is truncated or
    /// too large, and the parse never has to be retried.
    fn ensure(&mut self) -> Result<(), ChangelogError> {
        while self.end - self.start < MAX_RECORD && !self.eof {
            self.fill()?;
        }
        Ok(())
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, ChangelogError> {
        self.ensure()?;
        if self.start == self.end {
            return Ok(None);
        }
        let avail = &self.buf[self.start..self.end];
        let step = match self.header.encoding {
            Encoding::Ascii => parse_record::<Ascii>(avail, &self.header),
            Encoding::Binary => parse_record::<Binary>(avail, &self.header),
        };
        match step {
            Ok(Step::Record(r, used)) => {
                self.start += used;
                self.offset += used as u64;
                Ok(Some(r))
            }
            Ok(Step::Incomplete) if self.eof => Err(ChangelogError::Format {
                path: self.path.clone(),
                offset: self.offset,
                problem: Problem::Truncated,
            }),
            Ok(Step::Incomplete) => Err(ChangelogError::Format {
                path: self.path.clone(),
                offset: self.offset,
                problem: Problem::RecordTooLarge,
            }),
            Err((rel, problem)) => {
                Err(ChangelogError::Format { path: self.path.clone(), offset: self.offset + rel as u64, problem })
            }
        }
    }

    /// Reads every remaining record into owned values.
    pub fn collect_records(mut self) -> Result<Vec<Record>, ChangelogError> {
        let mut v = Vec::new();
        while let Some(r) = self.next_record()? {
            v.push(r.to_owned_record());
        }
        Ok(v)
    }
}

/// Parses the complete records at the start of `buf`, the bytes after the
/// header of a changelog the translator is still writing: the records, and
/// how many bytes they take. A record cut off at the end of `buf` is left
/// for a later read; an error is at an offset within `buf`.
pub fn parse_complete(buf: &[u8], h: &Header) -> Result<(Vec<Record>, usize), (usize, Problem)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let step = match h.encoding {
            Encoding::Ascii => parse_record::<Ascii>(&buf[at..], h),
            Encoding::Binary => parse_record::<Binary>(&buf[at..], h),
        };
        match step {
            Ok(Step::Record(r, used)) => {
                out.push(r.to_owned_record());
                at += used;
            }
            Ok(Step::Incomplete) => break,
            Err((rel, problem)) => return Err((at + rel, problem)),
        }
    }
    Ok((out, at))
}

/// Appends one record in the raw encoding of `h` (the inverse of the
/// reader; used for tests, fixtures and benchmarks).
pub fn encode_record(r: &RecordRef<'_>, h: &Header, out: &mut Vec<u8>) {
    let bin = h.encoding == Encoding::Binary;
    let put_gfid = |out: &mut Vec<u8>, g: &Gfid| {
        if bin {
            out.extend_from_slice(g.as_bytes());
        } else {
            out.extend_from_slice(&g.canonical());
        }
    };
    let put_int = |out: &mut Vec<u8>, n: u32| {
        if bin {
            out.extend_from_slice(&n.to_ne_bytes());
        } else {
            out.extend_from_slice(n.to_string().as_bytes());
        }
        out.push(0);
    };
    let put_entry = |out: &mut Vec<u8>, e: &EntryRef<'_>| {
        put_gfid(out, &e.parent);
        out.push(b'/');
        out.extend_from_slice(e.name);
        out.push(0);
    };
    let (ty, gfid) = match r {
        RecordRef::Data { gfid } => (b'D', gfid),
        RecordRef::Meta { gfid, .. } => (b'M', gfid),
        RecordRef::Entry { gfid, .. } => (b'E', gfid),
    };
    out.push(ty);
    put_gfid(out, gfid);
    out.push(0);
    match r {
        RecordRef::Data { .. } => {}
        RecordRef::Meta { fop, .. } => put_int(out, fop.0),
        RecordRef::Entry { fop, args, .. } => {
            put_int(out, fop.0);
            match args {
                EntryArgs::New { mode, uid, gid, entry } => {
                    put_int(out, *mode);
                    put_int(out, *uid);
                    put_int(out, *gid);
                    put_entry(out, entry);
                }
                EntryArgs::Delete { entry, path } => {
                    put_entry(out, entry);
                    if h.has_delete_path() {
                        // An empty path is written as an extra NUL.
                        out.extend_from_slice(path);
                        out.push(0);
                        if path.is_empty() {
                            out.push(0);
                        }
                    }
                }
                EntryArgs::Rename { from, to } => {
                    put_entry(out, from);
                    put_entry(out, to);
                }
                EntryArgs::Link { entry } => put_entry(out, entry),
            }
        }
    }
}

fn put_processed_entry(e: &EntryRef<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.parent.canonical());
    out.push(b'/');
    escape_into(e.name, out);
}

/// Appends the processed line of a record (with its newline), as
/// libgfchangelog writes it into `.processing/`.
pub fn processed_line(r: &RecordRef<'_>, out: &mut Vec<u8>) {
    match r {
        RecordRef::Data { gfid } => {
            out.extend_from_slice(b"D ");
            out.extend_from_slice(&gfid.canonical());
        }
        RecordRef::Meta { gfid, fop } => {
            out.extend_from_slice(b"M ");
            out.extend_from_slice(&gfid.canonical());
            out.push(b' ');
            out.extend_from_slice(fop.to_string().as_bytes());
        }
        RecordRef::Entry { gfid, fop, args } => {
            out.extend_from_slice(b"E ");
            out.extend_from_slice(&gfid.canonical());
            out.push(b' ');
            out.extend_from_slice(fop.to_string().as_bytes());
            out.push(b' ');
            match args {
                EntryArgs::New { mode, uid, gid, entry } => {
                    out.extend_from_slice(format!("{mode} {uid} {gid} ").as_bytes());
                    put_processed_entry(entry, out);
                }
                EntryArgs::Delete { entry, path } => {
                    put_processed_entry(entry, out);
                    if !path.is_empty() {
                        out.push(b' ');
                        escape_into(path, out);
                    }
                }
                EntryArgs::Rename { from, to } => {
                    put_processed_entry(from, out);
                    out.push(b' ');
                    put_processed_entry(to, out);
                }
                EntryArgs::Link { entry } => put_processed_entry(entry, out),
            }
        }
    }
    out.push(b'\n');
}

/// The timestamp of a changelog file name: `CHANGELOG.<ts>`, or the
/// lower-case `changelog.<ts>` HTIME records for an empty one. The flag is
/// true for an empty one.
pub fn name_ts(name: &[u8]) -> Option<(u64, bool)> {
    let (ts, empty) = if let Some(t) = name.strip_prefix(b"CHANGELOG.") {
        (t, false)
    } else {
        (name.strip_prefix(b"changelog.")?, true)
    };
    if ts.is_empty() || ts.len() > 20 || !ts.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(ts).ok()?.parse().ok().map(|t| (t, empty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const G1: &str = "0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0";
    const G2: &str = "c5250af6-720e-4bfe-b938-827614304f39";
    const ROOT: &str = "00000000-0000-0000-0000-000000000001";

    fn read_all(bytes: Vec<u8>) -> Result<Vec<Record>, ChangelogError> {
        Reader::new(io::Cursor::new(bytes), PathBuf::from("CHANGELOG.1"))?.collect_records()
    }

    fn processed(bytes: Vec<u8>) -> String {
        let mut r = Reader::new(io::Cursor::new(bytes), PathBuf::from("t")).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            processed_line(&rec, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    /// The reference's example (tests/utils/changelogparser.py).
    #[test]
    fn reference_example_ascii() {
        let raw = format!(
            "GlusterFS Changelog | version: v1.2 | encoding : 2\n\
             E{G1}\04\016877\00\00\0{ROOT}/dir1\0\
             E{G2}\023\033188\00\00\0{G1}/hello.txt\0\
             D{G2}\0"
        );
        assert_eq!(
            processed(raw.into_bytes()),
            format!(
                "E {G1} MKDIR 16877 0 0 {ROOT}/dir1\n\
                 E {G2} CREATE 33188 0 0 {G1}/hello.txt\n\
                 D {G2}\n"
            )
        );
    }

    #[test]
    fn every_entry_fop_and_meta() {
        let raw = format!(
            "GlusterFS Changelog | version: v1.2 | encoding : 2\n\
             M{G1}\038\0\
             M{G1}\017\0\
             E{G2}\05\0{G1}/a b\0\0\0\
             E{G2}\06\0{G1}/d\0/x/d\0\
             E{G2}\08\0{G1}/old\0{ROOT}/new%\0\
             E{G2}\09\0{G1}/hard\0\
             E{G2}\07\0{G1}/sym\n\0\
             E{G2}\03\08592\010\020\0{G1}/fifo\0"
        );
        assert_eq!(
            processed(raw.into_bytes()),
            format!(
                "M {G1} SETATTR\n\
                 M {G1} SETXATTR\n\
                 E {G2} UNLINK {G1}/a%20b\n\
                 E {G2} RMDIR {G1}/d /x/d\n\
                 E {G2} RENAME {G1}/old {ROOT}/new%25\n\
                 E {G2} LINK {G1}/hard\n\
                 E {G2} SYMLINK {G1}/sym%0A\n\
                 E {G2} MKNOD 8592 10 20 {G1}/fifo\n"
            )
        );
    }

    #[test]
    fn v1_1_has_no_delete_path() {
        let raw = format!("GlusterFS Changelog | version: v1.1 | encoding : 2\nE{G2}\05\0{G1}/a\0D{G1}\0");
        let recs = read_all(raw.into_bytes()).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(matches!(&recs[0], Record::Delete { path, .. } if path.is_empty()));
    }

    #[test]
    fn header_only_file_has_no_records() {
        assert_eq!(read_all(b"GlusterFS Changelog | version: v1.2 | encoding : 2\n".to_vec()).unwrap(), vec![]);
    }

    #[test]
    fn binary_encoding() {
        let h = Header { major: 1, minor: 2, encoding: Encoding::Binary };
        let recs = vec![
            Record::New {
                gfid: Uuid::parse_str(G1).unwrap(),
                fop: Fop::MKDIR,
                mode: 0o40755,
                uid: 1,
                gid: 2,
                entry: Entry { parent: Uuid::ROOT, name: b"dir1".to_vec() },
            },
            Record::Data { gfid: Uuid::parse_str(G2).unwrap() },
            Record::Meta { gfid: Uuid::parse_str(G2).unwrap(), fop: Fop::SETATTR },
            Record::Delete {
                gfid: Uuid::parse_str(G2).unwrap(),
                fop: Fop::UNLINK,
                entry: Entry { parent: Uuid::ROOT, name: b"x".to_vec() },
                path: Vec::new(),
            },
        ];
        let mut raw = h.encode();
        for r in &recs {
            encode_record(&r.as_ref(), &h, &mut raw);
        }
        assert_eq!(&raw[..51], b"GlusterFS Changelog | version: v1.2 | encoding : 1\n");
        assert_eq!(raw[51], b'E');
        assert_eq!(&raw[52..68], Uuid::parse_str(G1).unwrap().as_bytes());
        assert_eq!(read_all(raw).unwrap(), recs);
    }

    #[test]
    fn errors_carry_offsets() {
        let hdr = "GlusterFS Changelog | version: v1.2 | encoding : 2\n";
        let at = hdr.len() as u64;
        let cases: Vec<(String, u64, &str)> = vec![
            (format!("{hdr}X{G1}\0"), at, "unknown record type"),
            (format!("{hdr}D{G1}"), at, "ends inside a record"),
            (format!("{hdr}D0b99ef11-4b79-4cd0-9730-b5a0e8c4a8cZ\0"), at + 1, "invalid GFID"),
            (format!("{hdr}D{G1}\0M{G1}\0x\0"), at + 38 + 38, "invalid number"),
            (format!("{hdr}E{G1}\017\0{G1}/a\0"), at + 38, "not an entry operation"),
            (format!("{hdr}E{G1}\09\0{G1}a\0"), at + 40, "invalid <pgfid>/<name>"),
            (format!("{hdr}E{G1}\09\0{G1}/a/b\0"), at + 40, "invalid <pgfid>/<name>"),
        ];
        for (text, offset, msg) in cases {
            let e = read_all(text.into_bytes()).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with(&format!("CHANGELOG.1: byte {offset}: ")) && s.contains(msg), "{s}");
        }
        for bad in [
            "",
            "GlusterFS Changelog | version: v2.0 | encoding : 2\n",
            "hello\n",
            "GlusterFS Changelog | version: v1.2 | encoding : 3\n",
        ] {
            let e = read_all(bad.as_bytes().to_vec()).unwrap_err();
            assert!(e.to_string().contains("not a changelog header"), "{e}");
        }
    }

    #[test]
    fn huge_record_is_refused() {
        let mut raw = format!("GlusterFS Changelog | version: v1.2 | encoding : 2\nE{G1}\09\0{G1}/").into_bytes();
        raw.extend(std::iter::repeat_n(b'a', MAX_RECORD + 10));
        let e = read_all(raw).unwrap_err();
        assert!(e.to_string().contains("record longer than"), "{e}");
    }

    #[test]
    fn names() {
        assert_eq!(name_ts(b"CHANGELOG.1700000000"), Some((1_700_000_000, false)));
        assert_eq!(name_ts(b"changelog.1700000000"), Some((1_700_000_000, true)));
        assert_eq!(name_ts(b"CHANGELOG"), None);
        assert_eq!(name_ts(b"CHANGELOG.12a"), None);
    }

    fn arb_gfid() -> impl Strategy<Value = Gfid> {
        any::<[u8; 16]>().prop_map(Uuid)
    }

    fn arb_name() -> impl Strategy<Value = Vec<u8>> {
        // Any bytes but NUL and '/': spaces, newlines, '%' and non-UTF-8 too.
        proptest::collection::vec(any::<u8>().prop_filter("name byte", |b| *b != 0 && *b != b'/'), 1..40)
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (arb_gfid(), arb_name()).prop_map(|(parent, name)| Entry { parent, name })
    }

    pub(crate) fn arb_record(delete_path: bool) -> impl Strategy<Value = Record> {
        let path =
            if delete_path { proptest::collection::vec(1u8..=255, 0..60).boxed() } else { Just(Vec::new()).boxed() };
        prop_oneof![
            arb_gfid().prop_map(|gfid| Record::Data { gfid }),
            (arb_gfid(), 0u32..60).prop_map(|(gfid, f)| Record::Meta { gfid, fop: Fop(f) }),
            (
                arb_gfid(),
                prop_oneof![Just(Fop::CREATE), Just(Fop::MKNOD), Just(Fop::MKDIR)],
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                arb_entry()
            )
                .prop_map(|(gfid, fop, mode, uid, gid, entry)| Record::New {
                    gfid,
                    fop,
                    mode,
                    uid,
                    gid,
                    entry
                }),
            (arb_gfid(), prop_oneof![Just(Fop::UNLINK), Just(Fop::RMDIR)], arb_entry(), path)
                .prop_map(|(gfid, fop, entry, path)| Record::Delete { gfid, fop, entry, path }),
            (arb_gfid(), arb_entry(), arb_entry()).prop_map(|(gfid, from, to)| Record::Rename { gfid, from, to }),
            (arb_gfid(), prop_oneof![Just(Fop::LINK), Just(Fop::SYMLINK)], arb_entry())
                .prop_map(|(gfid, fop, entry)| Record::Link { gfid, fop, entry }),
        ]
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        (prop_oneof![Just(1u32), Just(2u32)], prop_oneof![Just(Encoding::Ascii), Just(Encoding::Binary)])
            .prop_map(|(minor, encoding)| Header { major: 1, minor, encoding })
    }

    /// A reader whose source returns a few bytes at a time, to exercise
    /// records split across reads.
    struct Trickle(io::Cursor<Vec<u8>>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    /// The records as a changelog of header `h` can hold them (no deleted
    /// path before v1.2).
    fn as_written(recs: Vec<Record>, h: &Header) -> Vec<Record> {
        recs.into_iter()
            .map(|r| match r {
                Record::Delete { gfid, fop, entry, .. } if !h.has_delete_path() => {
                    Record::Delete { gfid, fop, entry, path: Vec::new() }
                }
                r => r,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(h in arb_header(), recs in proptest::collection::vec(arb_record(true), 0..30), step in 1usize..200) {
            let recs = as_written(recs, &h);
            let mut raw = h.encode();
            for r in &recs {
                encode_record(&r.as_ref(), &h, &mut raw);
            }
            let parsed = Reader::new(Trickle(io::Cursor::new(raw), step), PathBuf::from("p")).unwrap().collect_records().unwrap();
            prop_assert_eq!(parsed, recs);
        }

        /// A changelog read while it is written, cut anywhere: the
        /// complete records come out, the cut one waits for the rest.
        #[test]
        fn records_of_a_file_being_written(h in arb_header(), recs in proptest::collection::vec(arb_record(true), 0..20), cut in 0usize..4000) {
            let recs = as_written(recs, &h);
            let mut body = Vec::new();
            for r in &recs {
                encode_record(&r.as_ref(), &h, &mut body);
            }
            let cut = cut.min(body.len());
            let (first, used) = parse_complete(&body[..cut], &h).unwrap();
            prop_assert!(used <= cut);
            prop_assert_eq!(&first[..], &recs[..first.len()]);
            let (rest, used2) = parse_complete(&body[used..], &h).unwrap();
            prop_assert_eq!(used + used2, body.len());
            prop_assert_eq!([first, rest].concat(), recs);
        }

        #[test]
        fn processed_lines_split_on_spaces(r in arb_record(true)) {
            let mut out = Vec::new();
            processed_line(&r.as_ref(), &mut out);
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert!(out.ends_with(b"\n"));
        }

        #[test]
        fn garbage_never_panics(h in arb_header(), body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut raw = h.encode();
            raw.extend(body);
            let _ = read_all(raw);
        }
    }
}
