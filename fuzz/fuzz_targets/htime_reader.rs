//! Any HTIME contents must parse to entries or an error with an offset, and
//! the history selection over them must never panic and only return
//! non-empty changelogs inside the chosen index.
#![no_main]

use std::path::PathBuf;

use gsyncd::gluster::htime::{self, History, HtimeFile};
use gsyncd::gluster::xattr::decode_htime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let (nums, rest) = data.split_at(24);
    let n = |i: usize| u64::from_le_bytes(nums[i * 8..i * 8 + 8].try_into().unwrap_or_default()) % 4_000_000_000;
    let (created, start, end) = (n(0), n(1), n(2));
    // The xattr value comes from the same bytes as the entries.
    let xattr = decode_htime(rest.get(..rest.len().min(24)).unwrap_or_default()).ok();
    let Ok(entries) = htime::parse_entries(rest) else { return };
    let f = HtimeFile { path: PathBuf::from("HTIME.0"), created, xattr, entries };
    match htime::select(std::slice::from_ref(&f), start, end) {
        History::Full { changelogs, .. } | History::Partial { changelogs, .. } => {
            assert!(changelogs.iter().all(|c| !c.empty && f.entries.contains(c)));
        }
        History::NotAvailable { .. } => {}
    }
});
