//! Any bytes after a valid header (either encoding, either version) must
//! give records or an error with an offset, never a panic; every record
//! read must print and encode back to bytes that parse to the same record.
#![no_main]

use std::io::Cursor;
use std::path::PathBuf;

use gsyncd::gluster::changelog::{self, Encoding, Header, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let header = Header {
        major: 1,
        minor: if sel & 1 == 0 { 1 } else { 2 },
        encoding: if sel & 2 == 0 { Encoding::Ascii } else { Encoding::Binary },
    };
    // Sometimes use the raw bytes as the whole file, header included.
    let mut file = if sel & 4 == 0 { header.encode() } else { Vec::new() };
    file.extend_from_slice(body);
    let Ok(mut r) = Reader::new(Cursor::new(file), PathBuf::from("fuzz")) else { return };
    let h = r.header;
    let mut line = Vec::new();
    while let Ok(Some(rec)) = r.next_record() {
        line.clear();
        changelog::processed_line(&rec, &mut line);
        let owned = rec.to_owned_record();
        let mut again = h.encode();
        changelog::encode_record(&owned.as_ref(), &h, &mut again);
        let back = Reader::new(Cursor::new(again), PathBuf::from("again")).and_then(Reader::collect_records);
        assert_eq!(back.ok(), Some(vec![owned]));
    }
});
