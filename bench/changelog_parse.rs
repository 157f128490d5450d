//! Changelog parser throughput, for side-by-side comparison with the
//! reference daemon's Python record handling (bench/reference_parse.py).
//!
//!     cargo bench --bench changelog_parse -- [--records N] [--files F] [--out DIR]
//!
//! Generates N records (default 2,000,000) in F raw ASCII v1.2 changelog
//! files (default 40) with a realistic mix of record kinds, writes the same
//! records in processed form next to them (the reference's input), then
//! times parsing the raw files on one thread and prints JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gsyncd::gluster::changelog::{self, Entry, Header, Reader, Record};
use gsyncd::gluster::fop::Fop;
use gsyncd::gluster::uuid::Uuid;

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uuid(&mut self) -> Uuid {
        let a = self.next().to_le_bytes();
        let b = self.next().to_le_bytes();
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&a);
        u[8..].copy_from_slice(&b);
        Uuid(u)
    }
    fn name(&mut self) -> Vec<u8> {
        let len = 8 + (self.next() % 16) as usize;
        (0..len)
            .map(|_| {
                let r = self.next() % 40;
                if r == 0 { b' ' } else { b"abcdefghijklmnopqrstuvwxyz0123456789._-"[(r as usize) % 39] }
            })
            .collect()
    }
}

fn record(rng: &mut Rng, dirs: &[Uuid]) -> Record {
    let gfid = rng.uuid();
    let parent = dirs[(rng.next() % dirs.len() as u64) as usize];
    let entry = Entry { parent, name: rng.name() };
    match rng.next() % 100 {
        0..40 => Record::Data { gfid },
        40..60 => Record::Meta { gfid, fop: if rng.next().is_multiple_of(4) { Fop::SETXATTR } else { Fop::SETATTR } },
        60..75 => Record::New { gfid, fop: Fop::CREATE, mode: 0o100644, uid: 0, gid: 0, entry },
        75..80 => Record::New { gfid, fop: Fop::MKDIR, mode: 0o40755, uid: 0, gid: 0, entry },
        80..88 => Record::Delete { gfid, fop: Fop::UNLINK, entry, path: Vec::new() },
        88..93 => Record::Rename { gfid, from: entry, to: Entry { parent, name: rng.name() } },
        93..97 => Record::Link { gfid, fop: Fop::LINK, entry },
        _ => Record::Link { gfid, fop: Fop::SYMLINK, entry },
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn generate(dir: &Path, records: usize, files: usize) -> Vec<PathBuf> {
    fs::create_dir_all(dir.join("raw")).unwrap();
    fs::create_dir_all(dir.join("processed")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dirs: Vec<Uuid> = (0..64).map(|_| rng.uuid()).chain([Uuid::ROOT]).collect();
    let h = Header::V1_2_ASCII;
    let per = records.div_ceil(files);
    let mut paths = Vec::new();
    let mut left = records;
    for f in 0..files {
        let n = per.min(left);
        left -= n;
        let mut raw = h.encode();
        let mut processed = Vec::new();
        for _ in 0..n {
            let r = record(&mut rng, &dirs);
            changelog::encode_record(&r.as_ref(), &h, &mut raw);
            changelog::processed_line(&r.as_ref(), &mut processed);
        }
        let name = format!("CHANGELOG.{}", 1_700_000_000 + f as u64 * 15);
        let p = dir.join("raw").join(&name);
        fs::write(&p, raw).unwrap();
        fs::write(dir.join("processed").join(&name), processed).unwrap();
        paths.push(p);
    }
    paths
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs benchmark
    // binaries without it, and then there is nothing to measure.
    if !args.iter().any(|a| a == "--bench") {
        println!("changelog_parse: run with `cargo bench --bench changelog_parse`");
        return;
    }
    let records: usize = arg(&args, "--records").map_or(2_000_000, |v| v.parse().unwrap());
    let files: usize = arg(&args, "--files").map_or(40, |v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = arg(&args, "--out").map_or_else(|| tmp.path().to_owned(), PathBuf::from);
    let paths = generate(&dir, records, files);
    let bytes: u64 = paths.iter().map(|p| fs::metadata(p).unwrap().len()).sum();

    // Warm the page cache, then take the best of three runs.
    let mut best = f64::MAX;
    let mut count = 0u64;
    for _ in 0..3 {
        let t = Instant::now();
        count = 0;
        let mut checksum = 0u64;
        for p in &paths {
            let mut r = Reader::open(p).unwrap();
            while let Some(rec) = r.next_record().unwrap() {
                checksum = checksum.wrapping_add(u64::from(rec.gfid().0[0]));
                count += 1;
            }
        }
        std::hint::black_box(checksum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "records": count,
            "files": paths.len(),
            "bytes": bytes,
            "seconds": best,
            "records_per_sec": (count as f64 / best).round(),
            "mib_per_sec": (bytes as f64 / best / 1048576.0 * 10.0).round() / 10.0,
            "processed_dir": dir.join("processed"),
        })
    );
}
