//! One framing for every channel (ctl, changelog, secondary RPC): a
//! big-endian u32 length, then a postcard-encoded message. The first frame
//! each way is a [`Hello`] naming the protocol version, the role and the
//! pid; a mismatch is an error naming the peer. A frame larger than the
//! channel's limit, a short read or an undecodable frame ends the channel
//! with a typed error, never a panic.

pub mod changelog;
pub mod ctl;
pub mod rpc;
pub mod status;

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of any channel's messages.
pub const PROTOCOL_VERSION: u32 = 3;

/// Default frame size limit: generous for entry batches, small enough that
/// a corrupt length cannot make a process allocate gigabytes.
pub const MAX_FRAME: usize = 16 << 20;

/// Who is at an end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Supervisor,
    Monitor,
    Agent,
    Worker,
    Secondary,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Supervisor => "supervisor",
            Role::Monitor => "monitor",
            Role::Agent => "agent",
            Role::Worker => "worker",
            Role::Secondary => "secondary",
        })
    }
}

/// The first frame on every channel, each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub role: Role,
    pub pid: u32,
}

impl Hello {
    pub fn new(role: Role) -> Hello {
        Hello { version: PROTOCOL_VERSION, role, pid: std::process::id() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{peer}: connection closed")]
    Closed { peer: String },
    #[error("{peer}: connection closed inside a frame ({got} of {want} bytes)")]
    ShortRead { peer: String, got: usize, want: usize },
    #[error("{peer}: frame of {len} bytes exceeds the limit of {max}")]
    Oversize { peer: String, len: usize, max: usize },
    #[error("{peer}: malformed frame: {reason}")]
    Decode { peer: String, reason: String },
    #[error("{peer}: speaks protocol version {theirs}, this gsyncd speaks {ours}")]
    Version { peer: String, theirs: u32, ours: u32 },
    #[error("{peer}: expected a {expected}, found a {found}")]
    WrongRole { peer: String, expected: Role, found: Role },
    #[error("{peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: io::Error,
    },
}

/// Reads exactly `buf.len()` bytes; `Ok(n < len)` only at end of stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8], max: usize, peer: &str) -> Result<(), ProtoError> {
    if payload.len() > max {
        return Err(ProtoError::Oversize { peer: peer.to_owned(), len: payload.len(), max });
    }
    let len = u32::try_from(payload.len()).map_err(|_| ProtoError::Oversize {
        peer: peer.to_owned(),
        len: payload.len(),
        max,
    })?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf).and_then(|()| w.flush()).map_err(|source| ProtoError::Io { peer: peer.to_owned(), source })
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read, max: usize, peer: &str) -> Result<Option<Vec<u8>>, ProtoError> {
    let io_err = |source| ProtoError::Io { peer: peer.to_owned(), source };
    let mut len = [0u8; 4];
    match read_full(r, &mut len).map_err(io_err)? {
        0 => return Ok(None),
        4 => {}
        got => return Err(ProtoError::ShortRead { peer: peer.to_owned(), got, want: 4 }),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ProtoError::Oversize { peer: peer.to_owned(), len, max });
    }
    let mut buf = vec![0u8; len];
    let got = read_full(r, &mut buf).map_err(io_err)?;
    if got < len {
        return Err(ProtoError::ShortRead { peer: peer.to_owned(), got, want: len });
    }
    Ok(Some(buf))
}

/// Encodes and writes a message.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T, max: usize, peer: &str) -> Result<(), ProtoError> {
    let bytes =
        postcard::to_stdvec(msg).map_err(|e| ProtoError::Decode { peer: peer.to_owned(), reason: e.to_string() })?;
    write_frame(w, &bytes, max, peer)
}

/// Reads and decodes a message; `Ok(None)` on a clean end of stream.
pub fn recv<T: DeserializeOwned>(r: &mut impl Read, max: usize, peer: &str) -> Result<Option<T>, ProtoError> {
    match read_frame(r, max, peer)? {
        None => Ok(None),
        Some(b) => postcard::from_bytes(&b)
            .map(Some)
            .map_err(|e| ProtoError::Decode { peer: peer.to_owned(), reason: e.to_string() }),
    }
}

/// Reads `T` messages from `stream` on a thread named `name`, handing each
/// to the event channel as `wrap(msg)`, and `gone(reason)` once the stream
/// ends or breaks (then the thread ends).
pub fn spawn_reader<T, E>(
    name: &str,
    mut stream: impl Read + Send + 'static,
    max: usize,
    tx: std::sync::mpsc::Sender<E>,
    wrap: impl Fn(T) -> E + Send + 'static,
    gone: impl FnOnce(String) -> E + Send + 'static,
) -> io::Result<()>
where
    T: DeserializeOwned,
    E: Send + 'static,
{
    let peer = name.to_owned();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let why = loop {
            match recv::<T>(&mut stream, max, &peer) {
                Ok(Some(m)) => {
                    if tx.send(wrap(m)).is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed the channel".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = tx.send(gone(why));
    })?;
    Ok(())
}

/// Exchanges [`Hello`]s: sends ours, reads theirs, checks version and role.
pub fn handshake<S: Read + Write>(s: &mut S, ours: Role, expect: Role, peer: &str) -> Result<Hello, ProtoError> {
    send(s, &Hello::new(ours), MAX_FRAME, peer)?;
    let theirs: Hello = recv(s, MAX_FRAME, peer)?.ok_or_else(|| ProtoError::Closed { peer: peer.to_owned() })?;
    if theirs.version != PROTOCOL_VERSION {
        return Err(ProtoError::Version { peer: peer.to_owned(), theirs: theirs.version, ours: PROTOCOL_VERSION });
    }
    if theirs.role != expect {
        return Err(ProtoError::WrongRole { peer: peer.to_owned(), expected: expect, found: theirs.role });
    }
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use std::os::unix::net::UnixStream;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        send(&mut buf, &ctl::ToSupervisor::Heartbeat, MAX_FRAME, "t").unwrap();
        send(&mut buf, &ctl::ToSupervisor::Phase("mounting".into()), MAX_FRAME, "t").unwrap();
        let mut r = Cursor::new(buf);
        assert_eq!(recv::<ctl::ToSupervisor>(&mut r, MAX_FRAME, "t").unwrap(), Some(ctl::ToSupervisor::Heartbeat));
        assert_eq!(
            recv::<ctl::ToSupervisor>(&mut r, MAX_FRAME, "t").unwrap(),
            Some(ctl::ToSupervisor::Phase("mounting".into()))
        );
        assert_eq!(recv::<ctl::ToSupervisor>(&mut r, MAX_FRAME, "t").unwrap(), None);
    }

    #[test]
    fn errors_are_typed() {
        let e = read_frame(&mut Cursor::new(vec![0, 0]), MAX_FRAME, "worker /b1").unwrap_err();
        assert!(matches!(e, ProtoError::ShortRead { got: 2, want: 4, .. }), "{e}");
        let e = read_frame(&mut Cursor::new(vec![0, 0, 0, 9, 1, 2]), MAX_FRAME, "p").unwrap_err();
        assert!(matches!(e, ProtoError::ShortRead { got: 2, want: 9, .. }), "{e}");
        let e = read_frame(&mut Cursor::new(vec![0xff, 0xff, 0xff, 0xff]), 1024, "p").unwrap_err();
        assert!(matches!(e, ProtoError::Oversize { max: 1024, .. }), "{e}");
        assert!(e.to_string().starts_with("p: "), "{e}");
        let e = recv::<Hello>(&mut Cursor::new(vec![0, 0, 0, 1, 0xff]), MAX_FRAME, "p").unwrap_err();
        assert!(matches!(e, ProtoError::Decode { .. }), "{e}");
        let e = write_frame(&mut Vec::new(), &[0; 10], 5, "p").unwrap_err();
        assert!(matches!(e, ProtoError::Oversize { .. }));
    }

    #[test]
    fn handshake_checks_version_and_role() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || handshake(&mut b, Role::Worker, Role::Supervisor, "supervisor"));
        let h = handshake(&mut a, Role::Supervisor, Role::Worker, "worker").unwrap();
        assert_eq!(h.role, Role::Worker);
        assert!(t.join().unwrap().is_ok());

        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let _ = send(&mut b, &Hello { version: 99, role: Role::Agent, pid: 1 }, MAX_FRAME, "x");
            let _ = recv::<Hello>(&mut b, MAX_FRAME, "x");
        });
        let e = handshake(&mut a, Role::Supervisor, Role::Agent, "agent /b1").unwrap_err();
        assert!(e.to_string().contains("agent /b1: speaks protocol version 99"), "{e}");
        t.join().unwrap();

        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || handshake(&mut b, Role::Monitor, Role::Supervisor, "s"));
        let e = handshake(&mut a, Role::Supervisor, Role::Worker, "worker").unwrap_err();
        assert!(matches!(e, ProtoError::WrongRole { found: Role::Monitor, .. }), "{e}");
        let _ = t.join();
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Cursor::new(b);
            while let Ok(Some(_)) = recv::<ctl::ToSupervisor>(&mut r, 1 << 10, "p") {}
        }
    }
}
