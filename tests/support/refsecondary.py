#!/usr/bin/env python3
"""Drives the reference daemon's own secondary server for differential tests.

Starts `gsyncd.py secondary PV localhost::SV ...` (the argv a primary worker
sends over ssh), speaks its RePCe protocol (pickled tuples, protocol 2, on
its stdin/stdout) the way the reference's worker does, makes the calls read
from stdin (JSON), closes the connection and reports (JSON on stdout):

  {"pid": N, "results": [{"ok": ...} | {"error": "..."}], "exit_status": N,
   "stderr_tail": "...", "leftover_mounts": [...]}

Entry failures come back as {"index", "errno", "info"} with the index of
the entry in its batch and the info dict's strings as they are.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid

SYNCDAEMON = "/usr/lib/x86_64-linux-gnu/glusterfs/python/syncdaemon"


def call(proc, method, *args):
    rid = (os.getpid(), threading.get_ident(), time.time())
    proc.stdin.write(pickle.dumps((rid, method) + args, protocol=2))
    proc.stdin.flush()
    got_rid, is_exc, res = pickle.load(proc.stdout)
    if got_rid != rid:
        raise RuntimeError("reply to another request: %r" % (got_rid,))
    return is_exc, res


def to_tuple_fields(d):
    d = dict(d)
    for k in ("version", "volume_mark"):
        if k in d and isinstance(d[k], list):
            d[k] = tuple(d[k])
    return d


def same_entry(a, b):
    return all(a.get(k) == b.get(k) for k in ("op", "gfid", "entry", "entry1"))


def failures_json(batch, failures):
    out = []
    used = set()
    for e, errno, info in failures:
        index = None
        for i, x in enumerate(batch):
            if i not in used and same_entry(x, e):
                index = i
                used.add(i)
                break
        out.append({"index": index, "errno": errno, "info": info})
    return out


def aux_mounts():
    with open("/proc/self/mountinfo") as f:
        return [l.split(" ")[4] for l in f if "gsyncd-aux-mount-" in l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--primary-vol", required=True)
    ap.add_argument("--secondary-vol", required=True)
    ap.add_argument("--dist-count", type=int, default=1)
    args = ap.parse_args()
    calls = json.load(sys.stdin)["calls"]

    node = str(uuid.uuid4())
    argv = [
        sys.executable, os.path.join(SYNCDAEMON, "gsyncd.py"), "secondary",
        args.primary_vol, "localhost::" + args.secondary_vol,
        "--primary-node", "localhost", "--primary-node-id", node,
        "--primary-brick", "/nonexistent",
        "--local-node", "localhost", "--local-node-id", node,
        "--secondary-timeout", "0", "--secondary-log-level", "DEBUG",
        "--secondary-gluster-log-level", "INFO",
        "--secondary-gluster-command-dir", "/usr/sbin",
        "--primary-dist-count", str(args.dist_count),
        # Log to stderr instead of /var/log/glusterfs/geo-replication-secondaries.
        "--debug",
    ]
    before = set(aux_mounts())
    # The reference sends the process umask in its first newfile blob; make
    # it the usual one so that this finding is reproducible.
    os.umask(0o022)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd="/")
    err_lines = []
    t = threading.Thread(target=lambda: err_lines.extend(
        proc.stderr.read().decode("utf-8", "replace").splitlines()))
    t.start()
    report = {"results": []}
    try:
        is_exc, v = call(proc, "__repce_version__")
        assert not is_exc and int(v) == 1, v
        is_exc, v = call(proc, "version")
        assert not is_exc and int(v) == 1, v
        is_exc, report["pid"] = call(proc, "pid")
        for c in calls:
            m = c["method"]
            a = list(c.get("args", []))
            if m == "keep_alive" and a and a[0] is not None:
                a[0] = to_tuple_fields(a[0])
            if m == "meta_ops":
                for e in a[0]:
                    st = e["stat"]
                    st["atime"], st["mtime"] = float(st["atime"]), float(st["mtime"])
            try:
                is_exc, res = call(proc, m, *a)
            except (EOFError, pickle.UnpicklingError) as e:
                report["results"].append({"error": "connection: %r" % (e,)})
                break
            if is_exc:
                report["results"].append({"error": "%s: %s" % (type(res).__name__, res)})
            elif m == "entry_ops":
                report["results"].append({"ok": failures_json(a[0], res)})
            elif m == "meta_ops":
                report["results"].append({"ok": [[x[1], x[2]] for x in res]})
            else:
                report["results"].append({"ok": res})
    finally:
        proc.stdin.close()
        try:
            report["exit_status"] = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            report["exit_status"] = proc.wait()
        t.join(timeout=5)
    left = [m for m in aux_mounts() if m not in before]
    for m in left:
        subprocess.call(["umount", "-l", m])
    report["leftover_mounts"] = left
    report["stderr_tail"] = "\n".join(err_lines[-40:])
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
