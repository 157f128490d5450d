#!/usr/bin/env python3
"""Throughput of the REFERENCE geo-replication daemon's changelog record handling.

    python3 bench/reference_parse.py [--repeat N] FILE_OR_DIR [FILE_OR_DIR...]

Each argument is a *processed* changelog file (the form libgfchangelog hands
to the worker: ``E <gfid> CREATE 33188 0 0 <pgfid>/<name>``, ``D <gfid>``,
``M <gfid> SETATTR`` ... one record per '\\n'-terminated line) or a directory
whose regular files are all such files (``cargo bench --bench
changelog_parse -- --out DIR`` writes them to DIR/processed).  Prints one
line of JSON:

    {"records": N, "seconds": S, "records_per_sec": R, "files": F,
     "python": "...", "notes": "...", ...}

``--repeat N`` runs the whole set N times and reports the fastest run (the
Rust bench reports the best of three; use ``--repeat 3`` to match it).

Nothing of the reference is copied here.  The installed GlusterFS
syncdaemon package (Debian glusterfs-server) is IMPORTED and its own
``GPrimaryChangelogMixin.process_change`` is RUN on each file, on an object
of the very class the daemon builds for changelog mode
(``primary.gprimary_builder()``), allocated with ``object.__new__`` so its
__init__ (which needs a mounted volume and an ssh link) does not run.

What is the reference's own code, and timed:
  * opening the file and ``readlines()``, ``strip()``, type/field split;
  * the live-changelog checks (entry/data stime comparison, hot-tier check);
  * ``update_fop_batch_stats``, ``unescape_space_newline``, ``os.path.join``
    with the aux-gfid prefix, ``edct()`` dict building, ``XCrawlMetadata``,
    the entry list, meta set and data set, RENAME/UNLINK/LINK bookkeeping;
  * the eager ``logging.debug('entries: %s' % repr(entries))`` (the repr is
    built whatever the log level, so it is part of the reference's cost);
  * the post-loop per-META-gfid ``edct('META', ...)`` list, status counters
    arithmetic, ``log_failures`` over the (empty) failure lists, real
    ``gsyncdconfig.get`` lookups on a Gconf loaded read-only from the
    installed default /etc/glusterfs/gsyncd.conf.

What is stubbed (cheap no-ops / constants; their real cost is NOT timed):
  * ``lstat`` on the primary's aux-gfid mount (UNLINK, RMDIR, RENAME, LINK,
    SYMLINK, and once per distinct SETATTR gfid): returns one pre-taken
    ``os.stat_result`` of a regular file, or ENOENT for gfids that the same
    file UNLINKs/RMDIRs (computed before timing), mimicking a live brick.
    The real one is a syscall plus, for ENOENT, a raised/caught OSError in
    ``errno_wrap``.
  * ``matching_disk_gfid`` (a getxattr on the mount, LINK/SYMLINK): True.
  * ``os.readlink`` via ``errno_wrap`` (SYMLINK, LINK of a symlink): a
    constant target.
  * RPC to the secondary (``entry_stime``/``stime`` -> (0, 0),
    ``entry_ops``/``meta_ops`` -> no failures, ``set_entry_stime``): no
    pickling, no ssh, no secondary-side work.
  * ``a_syncdata`` (queueing each data gfid for rsync, with its eager debug
    string of the whole set): no-op.
  * the status file (``GeorepStatus.inc_value``/``dec_value``/``set_field``,
    which rewrite a JSON file): no-ops.
  * log output: records go to a counting handler (nothing written);
    warnings are reported as "warnings".
Files are read once before timing so the page cache is warm; state that
``process()`` resets per batch is reset between files, outside the timing.
If a file's name has no numeric ``.<ts>`` suffix (the reference parses one),
it is processed through a temporary ``CHANGELOG.<n>`` symlink.
"""

import gc
import glob
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import types


def find_syncdaemon_dir():
    env = os.environ.get("GSYNCD_REFERENCE_SYNCDAEMON")
    if env:
        return env
    try:
        out = subprocess.run(["dpkg", "-L", "glusterfs-server"],
                             capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.endswith("/syncdaemon/primary.py"):
                return os.path.dirname(line)
    except OSError:
        pass
    cands = ["/usr/libexec/glusterfs/python/syncdaemon"]
    cands += glob.glob("/usr/lib/*/glusterfs/python/syncdaemon")
    cands += glob.glob("/usr/lib*/glusterfs/python/syncdaemon")
    for c in cands:
        if os.path.isfile(os.path.join(c, "primary.py")):
            return c
    sys.exit("reference_parse: cannot find the GlusterFS syncdaemon "
             "(install glusterfs-server or set GSYNCD_REFERENCE_SYNCDAEMON)")


def reference_version():
    try:
        v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                            "glusterfs-server"],
                           capture_output=True, text=True, check=False).stdout
        return v.strip() or None
    except OSError:
        return None


SYNCDAEMON = find_syncdaemon_dir()
sys.path.insert(0, SYNCDAEMON)

# libgfchangelog.py dlopens libgfchangelog.so at import time; process_change
# never calls into it.  Stub the module only if the library is missing.
try:
    import libgfchangelog  # noqa: F401  (reference module)
except OSError:
    sys.modules["libgfchangelog"] = types.ModuleType("libgfchangelog")

import gsyncdconfig  # noqa: E402  (reference module)
import primary  # noqa: E402  (reference module)
import syncdutils  # noqa: E402  (reference module)
from rconf import rconf  # noqa: E402  (reference module)


class CountingHandler(logging.Handler):
    """Swallows log records (no I/O), counting warnings and worse."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.warnings = 0

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            self.warnings += 1


def setup_logging():
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    h = CountingHandler()
    root.addHandler(h)
    root.setLevel(logging.INFO)  # the daemon's default log-level
    return h


def setup_config(notes):
    conf = "/etc/glusterfs/gsyncd.conf"
    try:
        gsyncdconfig.load(conf)  # reads only; writes nothing without a custom conf
        notes.append("gconf: reference Gconf loaded from %s (defaults)" % conf)
    except Exception as e:  # pragma: no cover - depends on the install
        gsyncdconfig._gconf = {
            "ignore-deletes": False, "gfid-conflict-resolution": True,
            "sync-method": "rsync", "sync-xattrs": True, "sync-acls": True,
        }
        notes.append("gconf: default conf unreadable (%s), dict of defaults" % e)
    rconf.args = types.SimpleNamespace(is_hottier=False)


# ---------------------------------------------------------------- stubs

class Stubs:
    """The side effects process_change reaches, replaced by constants."""

    def __init__(self):
        self.stat = os.lstat(os.path.abspath(__file__))  # a regular file
        self.gone = set()  # ".gfid/<gfid>" deleted by the current file
        self.lstat_calls = 0
        self.readlink_calls = 0
        self.gfid_checks = 0
        self.entry_ops_entries = 0
        self.meta_ops_entries = 0
        self.datas = 0

    def lstat(self, path):
        self.lstat_calls += 1
        if path in self.gone:
            return 2  # ENOENT, as syncdutils.lstat returns it
        return self.stat

    def matching_disk_gfid(self, gfid, entry):
        self.gfid_checks += 1
        return True

    def errno_wrap(self, call, arg=[], errnos=[], retry_errnos=[]):
        if call is os.readlink:
            self.readlink_calls += 1
            return "symlink-target"
        return REAL_ERRNO_WRAP(call, arg, errnos, retry_errnos)


REAL_ERRNO_WRAP = syncdutils.errno_wrap


class StubStatus:
    def inc_value(self, *a, **k):
        pass

    def dec_value(self, *a, **k):
        pass

    def set_field(self, *a, **k):
        pass


class StubServer:
    def __init__(self, stubs):
        self.stubs = stubs

    def entry_stime(self, path, uuid):
        return (0, 0)

    def stime(self, path, uuid):
        return (0, 0)

    def set_entry_stime(self, path, uuid, mark):
        return None

    def entry_ops(self, entries):
        self.stubs.entry_ops_entries += len(entries)
        return []

    def meta_ops(self, meta_entries):
        self.stubs.meta_ops_entries += len(meta_entries)
        return []


def build_worker(stubs):
    # Patch the names primary.py resolves as module globals.
    primary.lstat = stubs.lstat
    primary.matching_disk_gfid = stubs.matching_disk_gfid
    primary.errno_wrap = stubs.errno_wrap

    cls = primary.gprimary_builder()  # the changelog-mode class the daemon uses
    w = object.__new__(cls)
    w.name = "live_changelog"
    w.volinfo = {"uuid": "00000000-0000-0000-0000-00000000bench",
                 "volume_mark": None}
    w.secondary = types.SimpleNamespace(server=StubServer(stubs))
    w.status = StubStatus()

    def a_syncdata(files):
        stubs.datas += len(files)

    w.a_syncdata = a_syncdata
    w.turns = 0
    reset_batch(w)
    return cls, w


def reset_batch(w):
    """What process() resets at the start of a batch (untimed)."""
    w.unlinked_gfids = set()
    w.files_in_batch = 0
    w.datas_in_batch = set()
    w.skipped_entry_changelogs_first = None
    w.skipped_entry_changelogs_last = None
    w.num_skipped_entry_changelogs = 0
    w.batch_start_time = time.time()
    w.init_fop_batch_stats()


# ---------------------------------------------------------------- input

def ts_suffix_ok(path):
    return path.rsplit(".", 1)[-1].isdigit() if "." in os.path.basename(path) \
        else False


def collect(args):
    files = []
    for a in args:
        if os.path.isdir(a):
            names = [n for n in os.listdir(a) if not n.startswith(".")
                     and os.path.isfile(os.path.join(a, n))]

            def key(n):
                s = n.rsplit(".", 1)[-1]
                return (0, int(s), n) if s.isdigit() else (1, 0, n)
            files += [os.path.join(a, n) for n in sorted(names, key=key)]
        elif os.path.isfile(a):
            files.append(a)
        else:
            sys.exit("reference_parse: no such file or directory: %s" % a)
    if not files:
        sys.exit("reference_parse: no changelog files given")
    return files


def scan(path):
    """Untimed pre-pass: warm the page cache, count the lines the reference
    will iterate, and note which gfids the file UNLINKs/RMDIRs."""
    with open(path, "rb") as f:
        data = f.read()
    n = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    gone = set()
    for line in data.splitlines():
        p = line.split(b" ", 3)
        if len(p) >= 3 and p[0] == b"E" and p[2] in (b"UNLINK", b"RMDIR"):
            gone.add(".gfid/" + p[1].decode("ascii", "replace"))
    return n, gone


# ---------------------------------------------------------------- main

def main(argv):
    repeat = 1
    args = []
    it = iter(argv)
    for a in it:
        if a == "--repeat":
            repeat = max(1, int(next(it)))
        elif a.startswith("--repeat="):
            repeat = max(1, int(a.split("=", 1)[1]))
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    if not args:
        sys.exit("usage: reference_parse.py [--repeat N] FILE_OR_DIR [FILE...]")

    notes = []
    log = setup_logging()
    setup_config(notes)
    stubs = Stubs()
    cls, w = build_worker(stubs)

    files = collect(args)
    tmp = None
    work = []  # (path given to process_change, line count, gone set)
    for i, f in enumerate(files):
        n, gone = scan(f)
        p = os.path.abspath(f)
        if not ts_suffix_ok(p):
            if tmp is None:
                tmp = tempfile.mkdtemp(prefix="refparse-")
            p = os.path.join(tmp, "CHANGELOG.%d" % (1700000000 + 15 * i))
            os.symlink(os.path.abspath(f), p)
        work.append((p, n, gone))
    records = sum(n for _, n, _ in work)

    runs = []
    try:
        for _ in range(repeat):
            total = 0.0
            for p, n, gone in work:
                reset_batch(w)          # untimed, as process() would
                stubs.gone = gone
                t0 = time.perf_counter()
                w.process_change(p, 1, False)   # the reference's code
                total += time.perf_counter() - t0
                w.turns += 1
            runs.append(total)
            gc.collect()
    finally:
        if tmp is not None:
            for p, _, _ in work:
                if p.startswith(tmp):
                    os.unlink(p)
            os.rmdir(tmp)

    best = min(runs)
    notes.append(
        "times the reference's own GPrimaryChangelogMixin.process_change "
        "(class %s from %s, run on object.__new__ without __init__); "
        "per-record lstat/getxattr/readlink on the primary mount are stubbed "
        "(constant stat / True / constant target), so their syscall and "
        "errno_wrap costs are NOT included; secondary RPCs (entry_ops, "
        "meta_ops, stime), a_syncdata (rsync queueing) and status-file "
        "updates are no-ops; logging goes to a counting handler at INFO; "
        "files pre-read (warm cache); best of %d run(s)"
        % (cls.__mro__[1].__name__, os.path.join(SYNCDAEMON, "primary.py"),
           repeat))
    per_run = lambda x: x // repeat  # noqa: E731
    out = {
        "records": records,
        "seconds": round(best, 6),
        "records_per_sec": round(records / best) if best > 0 else None,
        "files": len(work),
        "python": platform.python_version(),
        "notes": "; ".join(notes),
        "reference": "glusterfs-server %s" % (reference_version() or "?"),
        "runs": [round(r, 6) for r in runs],
        "stubbed_calls_per_run": {
            "lstat": per_run(stubs.lstat_calls),
            "matching_disk_gfid": per_run(stubs.gfid_checks),
            "readlink": per_run(stubs.readlink_calls),
            "entry_ops_entries": per_run(stubs.entry_ops_entries),
            "meta_ops_entries": per_run(stubs.meta_ops_entries),
            "a_syncdata_files": per_run(stubs.datas),
        },
        "warnings": per_run(log.warnings),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
