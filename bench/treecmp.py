#!/usr/bin/env python3
"""Tree comparison for the side-by-side benchmark (bench/compare.sh).

Two comparators:

* `BrickView` / `backend_diff`: reads the volumes' brick directories
  directly (no GlusterFS I/O, so polling for convergence does not load the
  volumes being measured). A path's state is the union over the bricks of
  (type, permission bits, owner, size, symlink target, GFID from
  `trusted.gfid`, content digest); DHT link-to files are skipped, and copies
  that disagree (replicas, directories on every subvolume) count as not
  converged. Content digests are computed only when everything else already
  matches, and cached per (inode, size, mtime, ctime).

* `mount_diff`: the harness comparator of tests/support/tree.rs, over the
  FUSE mounts: names as bytes, types, sizes, content (sha256), modes,
  owners, symlink targets, user xattrs, GFIDs (`glusterfs.gfid.string`)
  and hard-link groups. Run once after convergence, outside the measured
  window.

Command line (for debugging): treecmp.py mount LEFT RIGHT
"""

import hashlib
import os
import stat
import sys

LINKTO = "trusted.glusterfs.dht.linkto"


def _digest(path, h=hashlib.md5):
    d = h()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            d.update(b)
    return d.hexdigest()


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


class BrickView:
    """The state of a subtree of a volume, read from its bricks."""

    def __init__(self, bricks):
        self.bricks = list(bricks)
        self._dcache = {}

    def _walk_brick(self, brick, rel, out):
        top = os.path.join(brick, rel) if rel else brick
        stack = [(top, rel)]
        while stack:
            d, r = stack.pop()
            try:
                it = os.scandir(d)
            except FileNotFoundError:
                continue
            with it:
                for e in it:
                    if not r and e.name in (".glusterfs", ".trashcan"):
                        continue
                    p = e.path
                    rp = os.path.join(r, e.name) if r else e.name
                    try:
                        st = os.lstat(p)
                    except FileNotFoundError:
                        continue
                    k = _kind(st.st_mode)
                    if k == "f" and st.st_mode & stat.S_ISVTX and st.st_size == 0:
                        try:
                            os.getxattr(p, LINKTO, follow_symlinks=False)
                            continue  # DHT link-to file
                        except OSError:
                            pass
                    try:
                        g = os.getxattr(p, "trusted.gfid", follow_symlinks=False).hex()
                    except OSError:
                        g = None
                    link = None
                    if k == "l":
                        try:
                            link = os.readlink(p)
                        except OSError:
                            link = None
                    meta = (k, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                            st.st_size if k == "f" else 0, link, g)
                    out.setdefault(rp, []).append((meta, p, st))
                    if k == "d":
                        stack.append((p, rp))

    def snapshot(self, rel):
        """path -> list of (meta, backend path, stat) over the bricks; the
        subtree's root itself is included as ''."""
        out = {}
        for b in self.bricks:
            top = os.path.join(b, rel)
            try:
                st = os.lstat(top)
            except FileNotFoundError:
                continue
            try:
                g = os.getxattr(top, "trusted.gfid", follow_symlinks=False).hex()
            except OSError:
                g = None
            out.setdefault("", []).append(
                (("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0, None, g), top, st))
            self._walk_brick(b, rel, out)
        return out

    def digest(self, p, st):
        key = (p, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        v = self._dcache.get(key)
        if v is None:
            try:
                v = _digest(p)
            except OSError as e:
                v = "<%s>" % e.strerror
            self._dcache[key] = v
        return v

    def state(self, copies, with_content):
        metas = {c[0] for c in copies}
        if len(metas) != 1:
            return ("conflict", tuple(sorted(map(repr, metas))))
        m = next(iter(metas))
        if m[0] == "f" and with_content:
            ds = {self.digest(p, st) for (_, p, st) in copies}
            if len(ds) != 1:
                return ("conflict-content",)
            return m + (next(iter(ds)),)
        return m


def backend_diff(pview, psnap, sview, rel, limit=5):
    """Differences between a primary snapshot (taken once) and the
    secondary's current state of `rel`; [] when converged."""
    ssnap = sview.snapshot(rel)
    diffs = []
    if not psnap and not ssnap:
        return diffs
    for path in sorted(set(psnap) | set(ssnap)):
        if path not in ssnap:
            diffs.append((path, "missing on the secondary"))
        elif path not in psnap:
            diffs.append((path, "only on the secondary"))
        else:
            a = pview.state(psnap[path], False)
            b = sview.state(ssnap[path], False)
            if a != b:
                diffs.append((path, "%r vs %r" % (a, b)))
            elif a[0] == "f":
                a = pview.state(psnap[path], True)
                b = sview.state(ssnap[path], True)
                if a != b:
                    diffs.append((path, "content differs"))
        if len(diffs) >= limit:
            break
    return diffs


def present(view, rel):
    """Whether `rel` exists on any brick of the view."""
    return any(os.path.lexists(os.path.join(b, rel)) for b in view.bricks)


# ---- the mount comparator (tests/support/tree.rs, default options) ----

def _mnode(p, st):
    k = _kind(st.st_mode)
    xs = {}
    try:
        for n in os.listxattr(p, follow_symlinks=False):
            if n.startswith("user."):
                xs[n] = os.getxattr(p, n, follow_symlinks=False)
    except OSError as e:
        xs["<error>"] = str(e).encode()
    try:
        g = os.getxattr(p, "glusterfs.gfid.string", follow_symlinks=False).rstrip(b"\0").decode()
    except OSError as e:
        g = "<error %s>" % e.strerror
    return {
        "kind": k,
        "size": st.st_size if k == "f" else 0,
        "mode": "%o" % stat.S_IMODE(st.st_mode),
        "owner": (st.st_uid, st.st_gid),
        "link": os.readlink(p) if k == "l" else None,
        "hash": _digest(p, hashlib.sha256) if k == "f" else None,
        "xattrs": xs,
        "gfid": g,
    }


def mount_diff(left, right, limit=20):
    """Differences between two trees on FUSE mounts; [] when they match."""
    diffs = []
    links = [{}, {}]

    def diff(rel, what):
        if len(diffs) < limit:
            diffs.append((rel or ".", what))

    def cmp(a, b, rel):
        try:
            sa, sb = os.lstat(a), os.lstat(b)
        except OSError as e:
            return diff(rel, "cannot stat: %s" % e)
        for side, (p, st) in enumerate(((a, sa), (b, sb))):
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                links[side].setdefault((st.st_dev, st.st_ino), set()).add(rel)
        try:
            na, nb = _mnode(a, sa), _mnode(b, sb)
        except OSError as e:
            return diff(rel, "cannot read: %s" % e)
        if na["kind"] != nb["kind"]:
            return diff(rel, "type: %s vs %s" % (na["kind"], nb["kind"]))
        for k in ("size", "hash", "mode", "owner", "link", "xattrs", "gfid"):
            if na[k] != nb[k]:
                diff(rel, "%s: %r vs %r" % (k, na[k], nb[k]))
                if k == "size":
                    break
        if na["kind"] == "d":
            la = set(os.listdir(a))
            lb = set(os.listdir(b))
            for n in sorted(la | lb):
                r = os.path.join(rel, n) if rel else n
                if n in la and n in lb:
                    cmp(os.path.join(a, n), os.path.join(b, n), r)
                elif n in la:
                    diff(r, "only on the left")
                else:
                    diff(r, "only on the right")

    cmp(left, right, "")
    ga = {frozenset(g) for g in links[0].values() if len(g) > 1}
    gb = {frozenset(g) for g in links[1].values() if len(g) > 1}
    for g in ga - gb:
        diff(sorted(g)[0], "hard links only on the left: %s" % " = ".join(sorted(g)))
    for g in gb - ga:
        diff(sorted(g)[0], "hard links only on the right: %s" % " = ".join(sorted(g)))
    return diffs


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "mount":
        d = mount_diff(sys.argv[2], sys.argv[3])
        for p, w in d:
            print("%s: %s" % (p, w))
        sys.exit(1 if d else 0)
    print(__doc__)
    sys.exit(2)
