#!/usr/bin/env python3
"""Differential test oracle: dump a brick's changelogs as processed by GlusterFS's
own consumer library (libgfchangelog.so.0) through its *history* API.

Usage:
    libgfchangelog_dump.py --brick BRICK_DIR --scratch SCRATCH_DIR --start TS --end TS
                           [--parallel N] [--log-file PATH] [--log-level N]

Output (stdout, raw bytes):
    # history_rc <rc>            0 = full range, 1 = partial (actual_end < end)
    # actual_end <N>
    == CHANGELOG.<ts>            one block per processed changelog, oldest first
    <the processed file's bytes, exactly as the library wrote them>
    ...

Notes on library behaviour (glusterfs 10.x, gf-history-changelog.c):
  * The history calls read their state from the journal object that
    gf_changelog_register() creates, so gf_changelog_init(NULL) +
    gf_changelog_register() must be called first, from the same thread.
    register() creates the scratch layout *before* it tries to reach the
    brick's changelog RPC socket; when no brick process is serving BRICK_DIR
    it returns -1 (after a fixed 2 s sleep) but history still works, so a
    register failure is reported on stderr and otherwise ignored.
  * gf_history_changelog() only accepts a start that lies inside an HTIME
    file's [HTIME.<ts>, max_ts) range (max_ts is the trusted.glusterfs.htime
    xattr "max_ts:count" on the HTIME file, so copies of a brick must keep
    trusted.* xattrs); start=0 therefore gives -2.  It then binary-searches
    the HTIME index and returns -1 ("wrong result" in the log) unless the
    entry before the one it lands on is strictly older than start (same for
    end).  Duplicate timestamps in HTIME (several rollovers in one second,
    e.g. rollover-time 1) therefore make many start/end values fail; pick
    values that are not themselves HTIME timestamps.  The range covered is
    HTIME entries from the first ts >= start up to the first ts >= min(end,
    max_ts) inclusive; actual_end is that last ts (it can exceed end).
    rc 1 (partial) means end - 20 > max_ts.
  * gf_history_changelog_scan() lists the .processing directory in readdir
    order and uses a function-static "last scan" flag, so one history pass per
    process; we sort by the numeric timestamp suffix, as gsyncd does.
  * Changelogs recorded in HTIME as lower-case "changelog.<ts>" (empty ones)
    and header-only changelogs are never published, so they do not appear.
"""

import argparse
import ctypes
import ctypes.util
import os
import re
import stat
import sys

BUFSIZE = 4096  # PATH_MAX; next_change() rejects maxlen > PATH_MAX
RUN_DIR = "/var/run/gluster"  # DEFAULT_VAR_RUN_DIRECTORY of the Debian build


def remove_reverse_socket():
    """register() listens on RUN_DIR/.<xxh64(brick)><pid>.sock for the brick's
    reverse connection; the library only unlinks it when a brick connects
    back, so without this every run would leak one socket file."""
    pat = re.compile(r"^\.[0-9a-f]{16}%d\.sock$" % os.getpid())
    try:
        names = os.listdir(RUN_DIR)
    except OSError:
        return
    for name in names:
        if pat.match(name):
            path = os.path.join(RUN_DIR, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass


def die(msg, code=1):
    remove_reverse_socket()
    try:
        sys.stdout.buffer.flush()
    except Exception:
        pass
    sys.stderr.write("libgfchangelog_dump: %s\n" % msg)
    sys.stderr.flush()
    os._exit(code)


def last_log_error(log_file):
    """Last error-level line of the library log (it explains most -1s)."""
    try:
        with open(log_file, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "] E [" in line:
            return "; library log: " + line.split("] E ", 1)[1].strip()
    return ""


def errstr():
    e = ctypes.get_errno()
    return "errno %d (%s)" % (e, os.strerror(e)) if e else "errno not set"


def load_lib():
    names = ["libgfchangelog.so.0"]
    found = ctypes.util.find_library("gfchangelog")
    if found and found not in names:
        names.append(found)
    last = None
    for name in names:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL, use_errno=True)
            break
        except OSError as e:
            last = e
    else:
        die("cannot load libgfchangelog.so.0: %s" % last)

    lib.gf_changelog_init.argtypes = [ctypes.c_void_p]
    lib.gf_changelog_init.restype = ctypes.c_int
    lib.gf_changelog_register.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_int,
                                          ctypes.c_int]
    lib.gf_changelog_register.restype = ctypes.c_int
    lib.gf_history_changelog.argtypes = [ctypes.c_char_p, ctypes.c_ulong,
                                         ctypes.c_ulong, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_ulong)]
    lib.gf_history_changelog.restype = ctypes.c_int
    lib.gf_history_changelog_scan.argtypes = []
    lib.gf_history_changelog_scan.restype = ctypes.c_ssize_t
    lib.gf_history_changelog_next_change.argtypes = [ctypes.c_char_p,
                                                     ctypes.c_size_t]
    lib.gf_history_changelog_next_change.restype = ctypes.c_ssize_t
    lib.gf_history_changelog_done.argtypes = [ctypes.c_char_p]
    lib.gf_history_changelog_done.restype = ctypes.c_int
    return lib


def ts_key(path):
    tail = path.rsplit(b".", 1)[-1]
    try:
        return (0, int(tail), path)
    except ValueError:
        return (1, 0, path)


def main():
    ap = argparse.ArgumentParser(
        description="Dump a brick's changelogs through libgfchangelog's "
                    "history API (processed/ASCII form).")
    ap.add_argument("--brick", required=True,
                    help="brick directory, spelled exactly as in the volume "
                         "(it is hashed into the brick RPC socket name)")
    ap.add_argument("--scratch", required=True,
                    help="library working dir (gets .history/.processing ...)")
    ap.add_argument("--start", required=True, type=int)
    ap.add_argument("--end", required=True, type=int)
    ap.add_argument("--parallel", type=int, default=1,
                    help="n_parallel for gf_history_changelog (default 1)")
    ap.add_argument("--log-file", default=None,
                    help="library log file (default SCRATCH/libgfchangelog.log)")
    ap.add_argument("--log-level", type=int, default=7,
                    help="gf_loglevel_t (7 = INFO, 9 = TRACE)")
    a = ap.parse_args()

    brick = a.brick
    cl_dir = os.path.join(brick, ".glusterfs", "changelogs")
    if not os.path.isdir(os.path.join(cl_dir, "htime")):
        die("%s: no htime directory (changelog never enabled?)" % cl_dir)
    os.makedirs(a.scratch, mode=0o700, exist_ok=True)
    log_file = a.log_file or os.path.join(a.scratch, "libgfchangelog.log")

    lib = load_lib()
    out = sys.stdout.buffer

    if lib.gf_changelog_init(None) == -1:
        die("gf_changelog_init failed: %s" % errstr())

    # Creates SCRATCH/{.current,.processing,.processed,tracker} and
    # SCRATCH/.history/{...}; the journal object the history API needs is
    # installed before the RPC probe, so -1 here (no brick process) is fine.
    ctypes.set_errno(0)
    rc = lib.gf_changelog_register(os.fsencode(brick), os.fsencode(a.scratch),
                                   os.fsencode(log_file), a.log_level, 0)
    if rc != 0:
        sys.stderr.write("libgfchangelog_dump: note: gf_changelog_register "
                         "returned %d (%s); no brick process serving %s? "
                         "continuing, history does not need it\n"
                         % (rc, errstr(), brick))

    actual_end = ctypes.c_ulong(0)
    ctypes.set_errno(0)
    hrc = lib.gf_history_changelog(os.fsencode(cl_dir), a.start, a.end,
                                   a.parallel, ctypes.byref(actual_end))
    out.write(b"# history_rc %d\n# actual_end %d\n" % (hrc, actual_end.value))
    if hrc == -2:
        die("gf_history_changelog returned -2: no HTIME file covers start=%d "
            "(start must be >= HTIME.<ts> and < its max_ts); see %s"
            % (a.start, log_file), 2)
    if hrc < 0:
        die("gf_history_changelog returned %d: %s%s"
            % (hrc, errstr(), last_log_error(log_file)))

    blocks = []  # (sort key, basename, bytes)
    buf = ctypes.create_string_buffer(BUFSIZE)
    while True:
        ctypes.set_errno(0)
        n = lib.gf_history_changelog_scan()
        if n == -1:
            die("gf_history_changelog_scan failed: %s%s"
                % (errstr(), last_log_error(log_file)))
        if n == 0:
            break
        batch = []
        while True:
            ret = lib.gf_history_changelog_next_change(buf, BUFSIZE)
            if ret == -1:
                die("gf_history_changelog_next_change failed: %s" % errstr())
            if ret == 0:
                break
            batch.append(buf.raw[:ret - 1])
        for path in batch:
            with open(path, "rb") as f:
                data = f.read()
            blocks.append((ts_key(path), os.path.basename(path), data))
            ctypes.set_errno(0)
            if lib.gf_history_changelog_done(path) == -1:
                die("gf_history_changelog_done(%r) failed: %s"
                    % (path, errstr()))

    blocks.sort(key=lambda b: b[0])
    for _, name, data in blocks:
        out.write(b"== " + name + b"\n")
        out.write(data)
        if data and not data.endswith(b"\n"):
            sys.stderr.write("libgfchangelog_dump: warning: %s does not end "
                             "with a newline; one was added\n"
                             % os.fsdecode(name))
            out.write(b"\n")
    out.flush()
    remove_reverse_socket()
    # The library leaves threads (janitor, poller) running; skip interpreter
    # teardown so they cannot race with it.
    os._exit(0)


if __name__ == "__main__":
    main()
