#!/usr/bin/env python3
"""Side-by-side benchmark: the reference geo-replication (the Python gsyncd
of Debian's glusterfs-server, driven by `gluster volume geo-replication`)
against gsyncd, on this machine, the same volume shapes and workloads.

Run through bench/compare.sh (which builds gsyncd first); see bench/README.md
for what is measured and how. Everything it creates is named gsyb<pid>...,
lives under /var/tmp/gsyb-<pid>/ and is removed at the end (also on Ctrl-C);
`compare.py --sweep` removes what a killed run left behind.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import treecmp  # noqa: E402

HOST = "127.0.0.2"  # glusterd refuses 127.0.0.1 for bricks
GEOREP_DIR = "/var/lib/glusterd/geo-replication"
REF_MISC = "/var/lib/misc/gluster/gsyncd"
GLUSTER_LOG = "/var/log/glusterfs"
CG_ROOT = "/sys/fs/cgroup/cpuacct"
TICK = os.sysconf("SC_CLK_TCK")
PREFIX = "gsyb"

T0 = time.time()


def log(msg):
    print("[%6.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def sh(cmd, check=True, quiet=False, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, cmd)), p.returncode, p.stdout.strip()[-2000:]))
    if not quiet and p.returncode != 0:
        log("  (%s: exit %d: %s)" % (" ".join(map(str, cmd))[:120], p.returncode, p.stdout.strip()[-300:]))
    return p


def gl(*args, check=True):
    """gluster --mode=script ARGS, retried while glusterd is busy."""
    last = None
    for _ in range(40):
        p = sh(["gluster", "--mode=script"] + list(args), check=False, quiet=True)
        if p.returncode == 0:
            return p.stdout
        last = p
        if not re.search(r"Another transaction|Locking failed|is busy|try again", p.stdout):
            break
        time.sleep(0.5)
    if check:
        raise RuntimeError("gluster %s: %s" % (" ".join(args), last.stdout.strip()))
    return None


def wait_until(what, timeout, f, interval=0.5):
    deadline = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() > deadline:
            raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Cleanup:
    """Undo actions, run in reverse order at the end (also on signals)."""

    def __init__(self):
        self.actions = []

    def push(self, what, fn):
        self.actions.append((what, fn))
        return len(self.actions) - 1

    def run(self, idx=None):
        while self.actions and (idx is None or len(self.actions) > idx):
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                log("cleanup: %s failed: %s" % (what, e))


CLEANUP = Cleanup()


# ---------------------------------------------------------------- /proc

def read_stat(pid):
    """(ppid, comm, cpu seconds, starttime ticks, user-space cpu seconds)
    or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    i = s.rfind(")")
    comm = s[s.find("(") + 1:i]
    fs = s[i + 2:].split()
    return int(fs[1]), comm, (int(fs[11]) + int(fs[12])) / TICK, int(fs[19]), int(fs[11]) / TICK


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    """Proportional set size: shared pages divided among their sharers."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


class CGroup:
    """A cpuacct cgroup (v1): CPU time of every task ever in it, exited
    children included."""

    def __init__(self, name):
        self.path = os.path.join(CG_ROOT, name)
        os.makedirs(self.path, exist_ok=True)
        CLEANUP.push("cgroup " + name, self.destroy)

    def add(self, pid):
        try:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            return True
        except OSError:
            return False

    def preexec(self):
        path = os.path.join(self.path, "cgroup.procs")

        def f():
            with open(path, "w") as fh:
                fh.write(str(os.getpid()))
        return f

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return {int(x) for x in f.read().split()}
        except OSError:
            return set()

    def usage(self):
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def destroy(self):
        if not os.path.isdir(self.path):
            return
        # Everything in the group is this benchmark's: its sshd and the
        # session processes. Give stragglers a moment, then end them.
        end = time.time() + 10
        while self.pids() and time.time() < end:
            time.sleep(0.5)
        left = self.pids()
        if left:
            log("cgroup %s: ending processes left behind: %s" % (
                os.path.basename(self.path), ", ".join("%d %s" % (p, " ".join(cmdline(p))[:100])
                                                       for p in sorted(left))))
            for pid in left:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            time.sleep(2)
        for pid in self.pids():
            try:
                with open(os.path.join(CG_ROOT, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                pass
        os.rmdir(self.path)


def ss_bytes(port):
    """{(local, peer): bytes acked + received} of established TCP
    connections whose local port is `port` (the private sshd's side)."""
    p = sh(["ss", "-tinH", "state", "established", "( sport = :%d )" % port], check=False, quiet=True)
    out = {}
    key = None
    for line in p.stdout.splitlines():
        if not line.startswith(("\t", " ")):
            f = line.split()
            key = (f[-2], f[-1]) if len(f) >= 2 else None
            continue
        if key is None:
            continue
        a = re.search(r"bytes_acked:(\d+)", line)
        r = re.search(r"bytes_received:(\d+)", line)
        out[key] = (int(a.group(1)) if a else 0) + (int(r.group(1)) if r else 0)
    return out


# ---------------------------------------------------------------- cluster

class Volume:
    def __init__(self, name, shape, bricks, mount):
        self.name, self.shape, self.bricks, self.mount = name, shape, bricks, mount

    def brick_pids(self):
        out = []
        for pid in all_pids():
            st = read_stat(pid)
            if st and st[1] == "glusterfsd":
                a = cmdline(pid)
                if "--volfile-id" in a and a[a.index("--volfile-id") + 1].startswith(self.name + "."):
                    out.append(pid)
        return out


class Cluster:
    def __init__(self, base, tag, rollover):
        self.base, self.tag, self.rollover = base, tag, rollover
        self.started_glusterd = False
        if gl("volume", "list", check=False) is None:
            if sh(["pgrep", "-x", "glusterd"], check=False, quiet=True).returncode != 0:
                log("starting glusterd")
                sh(["glusterd", "--log-level", "WARNING"])
                self.started_glusterd = True
                CLEANUP.push("stop the glusterd we started", self._stop_glusterd)
            wait_until("glusterd", 60, lambda: gl("volume", "list", check=False) is not None)

    def _stop_glusterd(self):
        sh(["pkill", "-x", "glusterd"], check=False)

    def create_volume(self, name, shape, primary, mount=True):
        vdir = os.path.join(self.base, "vols", name)
        n = 4 if shape == "2x2" else 1
        bricks = [os.path.join(vdir, "b%d" % i) for i in range(n)]
        for b in bricks:
            os.makedirs(b)
        mnt = os.path.join(vdir, "mnt")
        os.makedirs(mnt)
        v = Volume(name, shape, bricks, mnt)
        CLEANUP.push("volume " + name, lambda: self.destroy_volume(v))
        args = ["volume", "create", name]
        if shape == "2x2":
            args += ["replica", "2"]
        args += ["%s:%s" % (HOST, b) for b in bricks] + ["force"]
        gl(*args)
        if primary:
            for k, val in (("changelog.changelog", "on"), ("changelog.rollover-time", str(self.rollover)),
                           ("geo-replication.indexing", "on")):
                gl("volume", "set", name, k, val)
        gl("volume", "start", name)
        if mount:
            wait_until("mount of " + name, 60, lambda: self._mount(name, mnt), interval=1)
        return v

    def _mount(self, name, mnt):
        sh(["mount", "-t", "glusterfs", "%s:/%s" % (HOST, name), mnt], check=False, quiet=True)
        return os.path.ismount(mnt)

    def destroy_volume(self, v):
        fuse = [p for p in all_pids() if v.mount in cmdline(p)]
        if os.path.ismount(v.mount):
            if sh(["umount", v.mount], check=False, quiet=True).returncode != 0:
                sh(["umount", "-l", v.mount], check=False)
        if gl("volume", "info", v.name, check=False) is not None:
            gl("volume", "stop", v.name, "force", check=False)
            gl("volume", "delete", v.name, check=False)
        for p in fuse:  # the client does not always exit on umount
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        shutil.rmtree(os.path.dirname(v.bricks[0]), ignore_errors=True)
        shutil.rmtree(os.path.join(GLUSTER_LOG, "geo-replication", v.name), ignore_errors=True)
        for d in (os.path.join(GLUSTER_LOG, "bricks"), GLUSTER_LOG):
            slug = v.name
            try:
                for f in os.listdir(d):
                    if slug in f and f.endswith(".log"):
                        os.unlink(os.path.join(d, f))
            except OSError:
                pass


class Sshd:
    """A private sshd on 127.0.0.1 and 127.0.0.2 that stands in for the
    secondary node; it (and so every session it serves) runs in `cgroup`."""

    def __init__(self, d, cgroup, path_prefix=None):
        self.dir = d
        os.makedirs(d)
        os.makedirs("/run/sshd", exist_ok=True)
        for k in ("host_key", "admin_key"):
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gsyb-bench", "-f", os.path.join(d, k)])
        shutil.copy(os.path.join(d, "admin_key.pub"), os.path.join(d, "authorized_keys"))
        self.admin_key = os.path.join(d, "admin_key")
        self.port = free_port()
        conf = os.path.join(d, "sshd_config")
        with open(conf, "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nListenAddress %s\nHostKey %s/host_key\n"
                    "PidFile %s/sshd.pid\nAuthorizedKeysFile %s/authorized_keys\n"
                    "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
                    "MaxStartups 100\nMaxSessions 100\n" % (self.port, HOST, d, d, d))
            # Sessions run their command through root's shell; bash sources
            # ~/.bashrc for ssh sessions unless SHLVL says it is nested,
            # and this machine's root .bashrc is a heavy developer one.
            f.write("SetEnv PATH=%s/usr/sbin:/usr/bin:/sbin:/bin SHLVL=1\n" % (path_prefix + ":" if path_prefix else ""))
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", conf, "-E", os.path.join(d, "sshd.log")],
                                     preexec_fn=cgroup.preexec(), stdin=subprocess.DEVNULL)
        CLEANUP.push("sshd " + d, self.stop)
        wait_until("sshd on port %d" % self.port, 20, self._listening, interval=0.1)

    def _listening(self):
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def authorize(self, lines):
        with open(os.path.join(self.dir, "authorized_keys"), "a") as f:
            f.write(lines.rstrip("\n") + "\n")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ssh_opts(self):
        return ["-p", str(self.port), "-i", self.admin_key, "-oBatchMode=yes", "-oStrictHostKeyChecking=no",
                "-oUserKnownHostsFile=/dev/null", "-oLogLevel=ERROR", "-oIdentitiesOnly=yes"]


# ---------------------------------------------------------------- daemons

class Daemon:
    """One replication setup: its primary and secondary volume, its sshd,
    its accounting cgroup, its session."""

    key = label = None
    needs_adoption = False

    def __init__(self, bench, shape, pvol, svol):
        self.bench, self.shape, self.pvol, self.svol = bench, shape, pvol, svol
        self.cg = CGroup("%s%d-%s%s" % (PREFIX, os.getpid(), self.key, shape))
        self.pview = treecmp.BrickView(pvol.bricks)
        self.sview = treecmp.BrickView(svol.bricks)

    def match(self, argv):
        """Whether a process outside the cgroup belongs to this session."""
        s = " ".join(argv)
        return self.pvol.name in s or self.svol.name in s

    def own(self, pid, argv):
        raise NotImplementedError

    def adopt(self):
        """Moves this session's processes that are not in its cgroup yet
        into it. Only the reference needs it: glusterd starts its monitor
        (which daemonizes). glusterd's own short-lived helper invocations
        (config-get, status) are left out."""
        if not self.needs_adoption:
            return 0
        mine = self.cg.pids()
        glusterd = set(int(p) for p in sh(["pgrep", "-x", "glusterd"], check=False, quiet=True).stdout.split())
        moved = 0
        for pid in all_pids():
            if pid in mine:
                continue
            st = read_stat(pid)
            if not st or st[1] in ("gluster", "glusterd", "glusterfsd", "ss", "sshd") or st[0] in glusterd:
                continue
            if st[0] in mine and st[0] != 1:
                pass
            else:
                a = cmdline(pid)
                if not a or not self.match(a):
                    continue
                if st[1] == "glusterfs" and "--aux-gfid-mount" not in a:
                    continue  # the benchmark's own mounts
            if self.cg.add(pid):
                moved += 1
        return moved

    def settle(self, seconds=3):
        time.sleep(seconds)

    def stimes(self):
        """The session's stime on each primary brick root (seconds, or
        None where it is not set yet), grouped by replica set."""
        out = []
        for b in self.pvol.bricks:
            v = None
            try:
                for k in os.listxattr(b):
                    if k.startswith("trusted.glusterfs.") and k.endswith(".stime") and k.count(".") == 4:
                        sec, usec = struct.unpack("!II", os.getxattr(b, k))
                        v = max(v or 0, sec + usec / 1e6)
            except OSError:
                pass
            out.append(v)
        width = 2 if self.shape == "2x2" else 1
        return [out[i:i + width] for i in range(0, len(out), width)]

    def quiesce(self, timeout):
        """Waits until the session has recorded as done every change made
        before now: a marker is written on the primary, and every replica
        set needs a brick whose stime has passed it. A session stopped
        before that replays, when it starts, the changelogs it had synced
        but not yet recorded, and the figures of the next workload would
        count them (how much depends on where the rollover fell)."""
        write_file(os.path.join(self.pvol.mount, ".gsyb-quiesce"), b"%f\n" % time.time())
        t = time.time()

        def done():
            return all(any(v is not None and v >= t for v in g) for g in self.stimes())
        try:
            wait_until("%s to record the changes before %s as synced" % (self.label, time.strftime("%H:%M:%S")),
                       timeout, done, interval=0.5)
        except RuntimeError as e:
            log("    %s (stimes: %s); stopping it anyway" % (e, self.stimes()))
            return False
        log("    %s recorded the earlier changes as synced after %.1f s" % (self.label, time.time() - t))
        return True


class RefDaemon(Daemon):
    key, label = "ref", "reference"
    PY = "gsyncd.py"
    needs_adoption = True

    def __init__(self, bench, shape, pvol, svol, meta=None):
        super().__init__(bench, shape, pvol, svol)
        self.sshd = Sshd(os.path.join(bench.base, "sshd-ref-" + shape), self.cg,
                         path_prefix=bench.rsync32_dir if bench.ref_mode == "rsync-3.2" else None)
        self.url = "127.0.0.1::" + svol.name
        self.sess = "%s_127.0.0.1_%s" % (pvol.name, svol.name)
        self.meta = meta
        self.running = False

    def g(self, *args, check=True):
        return gl("volume", "geo-replication", self.pvol.name, self.url, *args, check=check)

    def own(self, pid, argv):
        return any(a.endswith(self.PY) for a in argv[:3])

    def create(self):
        self.bench.ensure_gsec()
        with open(os.path.join(GEOREP_DIR, "common_secret.pem.pub")) as f:
            self.sshd.authorize(f.read())
        CLEANUP.push("reference session " + self.sess, self.delete)
        self.g("create", "ssh-port", str(self.sshd.port), "no-verify")
        opts = "-oPasswordAuthentication=no -oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -i %s/%s"
        conf = [("ssh-port", str(self.sshd.port)),
                ("ssh-options", opts % (GEOREP_DIR, "secret.pem")),
                ("ssh-options-tar", opts % (GEOREP_DIR, "tar_ssh.pem")),
                ("sync-jobs", str(self.bench.sync_jobs)),
                ("sync-method", "rsync"),
                # Workers exec sys.executable (Debian's python3) instead of
                # `unshare ... python3` from glusterd's PATH.
                ("access-mount", "true")]
        if self.bench.ref_mode == "rsync-3.2":
            conf.append(("rsync-command", os.path.join(self.bench.rsync32_dir, "rsync")))
        else:
            conf.append(("secondary-access-mount", "true"))
        if self.meta:
            conf += [("use-meta-volume", "true"), ("meta-volume-mnt", self.meta.mount)]
        for k, v in conf:
            self.g("config", k, v)
        # What `create push-pem` does on the secondary.
        gl("volume", "set", self.svol.name, "features.read-only", "on")

    def start(self):
        self.g("start")
        self.running = True
        # glusterd spawns the monitor: adopt it and what it starts quickly.
        end = time.time() + 3
        while time.time() < end:
            self.adopt()
            time.sleep(0.05)

    def status(self):
        out = self.g("status", "--xml", check=False)
        if not out:
            return []
        try:
            root = ET.fromstring(out[out.find("<?xml"):])
        except ET.ParseError:
            return []
        return [(p.findtext("status"), p.findtext("crawl_status")) for p in root.iter("pair")]

    def ready(self):
        rows = self.status()
        return bool(rows) and all(s in ("Active", "Passive") for s, _ in rows) and \
            any(s == "Active" for s, _ in rows) and \
            all(c == "Changelog Crawl" for s, c in rows if s == "Active")

    def stop(self):
        if self.running:
            self.g("stop", check=False) or self.g("stop", "force", check=False)
            self.running = False
            # The secondary side exits on EOF.
            wait_until("reference processes to exit", 60, lambda: not self._procs(), interval=0.5)

    def _procs(self):
        return [p for p in all_pids() if self.own(p, cmdline(p)) and self.match(cmdline(p))]

    def delete(self):
        self.stop()
        if os.path.isdir(os.path.join(GEOREP_DIR, self.sess)):
            self.g("delete", check=False)
        for d in (os.path.join(GLUSTER_LOG, "geo-replication", self.sess),
                  os.path.join(GLUSTER_LOG, "geo-replication-secondaries", self.sess),
                  os.path.join(REF_MISC, self.sess), os.path.join(GEOREP_DIR, self.sess)):
            shutil.rmtree(d, ignore_errors=True)


class GsyDaemon(Daemon):
    key, label = "gsy", "gsyncd"

    def __init__(self, bench, shape, pvol, svol):
        super().__init__(bench, shape, pvol, svol)
        self.sshd = Sshd(os.path.join(bench.base, "sshd-gsy-" + shape), self.cg)
        self.session = "gsyb%d%s" % (os.getpid(), shape.replace("x", ""))
        self.dir = os.path.join(bench.base, "gsyncd-" + shape)
        self.conf = os.path.join(self.dir, "conf")
        self.env = dict(os.environ, GSYNCD_CONFIG_DIR=self.conf)
        self.proc = None
        self.exe = os.path.realpath(bench.gsyncd)

    def own(self, pid, argv):
        try:
            return os.readlink("/proc/%d/exe" % pid).split(" (deleted)")[0] == self.exe
        except OSError:
            return False

    def gs(self, *args, check=True):
        return sh([self.bench.gsyncd] + list(args), check=check, env=self.env)

    def create(self):
        os.makedirs(self.conf)
        CLEANUP.push("gsyncd session " + self.session, self.delete)
        agent = sh(["ssh-agent", "-s"]).stdout
        env = dict(self.env)
        for k in ("SSH_AUTH_SOCK", "SSH_AGENT_PID"):
            m = re.search(k + r"=([^;]+);", agent)
            env[k] = m.group(1)
        try:
            sh(["ssh-add", "-q", self.sshd.admin_key], env=env)
            d = self.dir
            sh([self.bench.gsyncd, "create", self.session, "--primary", self.pvol.name,
                "--secondary", "root@127.0.0.1::" + self.svol.name, "--ssh-port", str(self.sshd.port),
                "--push-key", "--authorized-keys", os.path.join(self.sshd.dir, "authorized_keys"),
                "--set", "state-dir=%s/state" % d, "--set", "run-dir=%s/run" % d,
                "--set", "gluster-logdir=%s/log" % d, "--set", "remote-gsyncd=" + self.bench.gsyncd,
                "--set", "sync-jobs=%d" % self.bench.sync_jobs, "--set", "sync-method=rsync"]
               # A replicated secondary holds AFR's .glusterfs-anonymous-inode-<uuid>
               # directory from the start, which create's emptiness check refuses.
               + (["--force"] if self.shape == "2x2" else []), env=env)
        finally:
            sh(["ssh-agent", "-k"], check=False, quiet=True, env=env)

    def start(self):
        self.log = open(os.path.join(self.dir, "supervise.log"), "ab")
        self.proc = subprocess.Popen([self.bench.gsyncd, "--log-target", "stderr", "supervise", self.session],
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, cwd="/", preexec_fn=self.cg.preexec(),
                                     start_new_session=True)

    def ready(self):
        p = self.gs("status", self.session, "--json", check=False)
        try:
            bricks = json.loads(p.stdout)["sessions"][0]["bricks"]
        except (ValueError, KeyError, IndexError):
            return False
        st = [(b["status"], b["crawl_status"]) for b in bricks]
        return bool(st) and all(s in ("Active", "Passive") for s, _ in st) and \
            any(s == "Active" for s, _ in st) and all(c == "Changelog Crawl" for s, c in st if s == "Active")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                log("gsyncd supervise did not stop in 90 s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # Remote ends exit on EOF.
        wait_until("gsyncd processes to exit", 60,
                   lambda: not [p for p in self.cg.pids() if self.own(p, [])], interval=0.5)

    def delete(self):
        self.stop()
        # Kept with the results, for reading what a run did.
        try:
            shutil.copyfile(os.path.join(self.dir, "supervise.log"),
                            os.path.join(self.bench.args.out, "gsyncd-%s.log" % self.shape))
        except OSError:
            pass
        for d in (os.path.join(GLUSTER_LOG, "geo-replication-secondaries",
                               "%s_127.0.0.1_%s" % (self.pvol.name, self.svol.name)),):
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- meter

class Meter:
    """CPU, peak RSS and ssh bytes of one daemon over a window.

    * total: the daemon's cgroup (cpuacct.usage: every task that was in it,
      exited ones included; both sides: primary-side processes and the
      private sshd that serves the secondary side);
    * own: utime+stime of the daemon's own processes (sampled; cumulative
      from each process's start);
    * aux: the glusterfs aux mounts in the cgroup (sampled);
    * children: total - own - aux (ssh, sshd sessions, rsync, tar, ...);
    * bricks: utime+stime of the primary and secondary volumes' glusterfsd;
    * rss: the sum over the daemon's own processes of their peak VmHWM
      (reset at the window's start through clear_refs);
    * ssh: TCP bytes (acked + received) on the private sshd's port.
    """

    def __init__(self, d, interval=0.5):
        self.d, self.interval = d, interval
        self.procs = {}
        self.bricks = {}
        self.conns = {}
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def _sample(self, first=False):
        d = self.d
        d.adopt()
        for pid in d.cg.pids():
            st = read_stat(pid)
            if not st:
                continue
            k = (pid, st[3])
            e = self.procs.get(k)
            if e is None or e["name"] != st[1]:
                # New, or exec'd into something else since (the ssh gate,
                # the reference's C wrapper): (re)classify.
                a = cmdline(pid)
                cls = "own" if d.own(pid, a) else ("aux" if st[1] == "glusterfs" else "child")
                if first and cls == "own":
                    try:
                        with open("/proc/%d/clear_refs" % pid, "w") as f:
                            f.write("5")
                    except OSError:
                        pass
                if e is None:
                    e = self.procs[k] = {"base": st[2] if first else 0.0, "ubase": st[4] if first else 0.0, "hwm": 0}
                e.update(cls=cls, name=st[1], role=role(a))
                if cls != "own":
                    e["hwm"] = e["pss"] = 0
            e["last"] = st[2]
            e["ulast"] = st[4]
            if e["cls"] == "own":
                e["hwm"] = max(e["hwm"], vm_hwm_kib(pid))
                e["pss"] = max(e.get("pss", 0), pss_kib(pid))
        for side, pids in self.brick_pids.items():
            for pid in pids:
                st = read_stat(pid)
                if st:
                    e = self.bricks.setdefault(pid, {"base": st[2], "last": st[2], "side": side})
                    e["last"] = st[2]
        for k, v in ss_bytes(d.sshd.port).items():
            e = self.conns.setdefault(k, {"base": v if first else 0, "last": v})
            e["last"] = max(e["last"], v)

    def _loop(self):
        while not self.stop_ev.wait(self.interval):
            with self.lock:
                self._sample()

    def start(self):
        self.brick_pids = {"p": self.d.pvol.brick_pids(), "s": self.d.svol.brick_pids()}
        with self.lock:
            self._sample(first=True)
            self.cg0 = self.d.cg.usage()
            self.t0 = time.time()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        self.thread.join()
        with self.lock:
            self._sample()
            total = self.d.cg.usage() - self.cg0
        sums = {"own": 0.0, "aux": 0.0, "child": 0.0}
        own_user = 0.0
        for e in self.procs.values():
            sums[e["cls"]] += max(0.0, e["last"] - e["base"])
            if e["cls"] == "own":
                own_user += max(0.0, e["ulast"] - e["ubase"])
        bricks = {side: sum(max(0.0, e["last"] - e["base"]) for e in self.bricks.values() if e["side"] == side)
                  for side in "ps"}
        return {
            "cpu_own": sums["own"],
            "cpu_own_user": own_user,
            "cpu_children": max(0.0, total - sums["own"] - sums["aux"]),
            "cpu_aux": sums["aux"],
            "cpu_bricks": bricks["p"] + bricks["s"],
            "cpu_pbricks": bricks["p"],
            "cpu_sbricks": bricks["s"],
            "cpu_gluster": sums["aux"] + bricks["p"] + bricks["s"],
            "cpu_total": max(total, sums["own"] + sums["aux"]) + bricks["p"] + bricks["s"],
            "rss_mib": sum(e["hwm"] for e in self.procs.values() if e["cls"] == "own") / 1024.0,
            "pss_mib": sum(e.get("pss", 0) for e in self.procs.values() if e["cls"] == "own") / 1024.0,
            "ssh_mb": sum(max(0, e["last"] - e["base"]) for e in self.conns.values()) / 1e6,
            "procs": self.by_role(),
        }

    def by_role(self):
        """CPU seconds and processes per (class, role), for the profile."""
        out = {}
        for e in self.procs.values():
            k = "%s:%s" % (e["cls"], e["role"])
            c = out.setdefault(k, [0.0, 0])
            c[0] = round(c[0] + max(0.0, e["last"] - e["base"]), 2)
            c[1] += 1
        return out


def role(argv):
    """A short name for what a process is: the gsyncd/reference
    subcommand, or the program's name."""
    if not argv:
        return "?"
    prog = os.path.basename(argv[0])
    rest = argv[1:]
    if rest and rest[0].endswith("gsyncd.py"):
        prog, rest = "gsyncd.py", rest[1:]
    if prog in ("gsyncd", "gsyncd.py"):
        if "--monitor" in rest:
            return prog + " monitor"
        for a in rest:
            if a in ("supervise", "monitor", "agent", "worker", "secondary", "mount-guard", "ssh-gate", "receive",
                     "status", "config", "create", "delete", "config-get", "config-set", "monitor-status"):
                return "%s %s" % (prog, a)
        return prog
    if prog.startswith("sshd"):
        return "sshd"
    return prog


def profile_counts(vol):
    """{fop: calls} summed over the volume's bricks since the last
    `profile info clear` (`gluster volume profile ... info incremental`
    would also reset; cumulative after a clear is the same window)."""
    out = gl("volume", "profile", vol, "info", "cumulative", "--xml", check=False) or ""
    counts = {}
    try:
        root = ET.fromstring(out[out.find("<?xml"):])
    except ET.ParseError:
        return counts
    for fop in root.iter("fop"):
        name, hits = fop.findtext("name"), fop.findtext("hits")
        if name and hits and hits.isdigit() and int(hits):
            counts[name] = counts.get(name, 0) + int(hits)
    return counts


# ---------------------------------------------------------------- workloads

def rbytes(rng, n):
    return rng.randbytes(n)


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


class Sizes:
    def __init__(self, quick):
        q = quick
        self.small_dirs, self.small_files, self.small_size = (10, 50, 4096) if q else (100, 100, 4096)
        self.large_n, self.large_mib = (4, 10) if q else (20, 50)
        # mixed: base tree, then renames, deletes, hard links, symlinks, chmod/chown, truncates, depth
        self.mixed_dirs, self.mixed_per_dir = (5, 80) if q else (40, 100)
        self.mixed_ops = (100, 100, 20, 20, 100, 20, 20) if q else (1000, 1000, 200, 200, 1000, 200, 20)
        self.storm_names, self.storm_rounds = (10, 10) if q else (20, 100)
        self.backlog = 1000 if q else 10000
        self.latency_samples = 4 if q else 20


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.sizes = Sizes(args.quick)
        self.sync_jobs = args.sync_jobs
        self.rollover = args.rollover
        self.base = "/var/tmp/%s-%d" % (PREFIX, os.getpid())
        self.gsyncd = args.gsyncd
        self.ref_mode = args.ref_rsync
        self.rsync32_dir = args.rsync32_dir
        self.results = []
        self.gsec_made = None
        self.restarts = {}
        self.notes = []

    # -- setup ----------------------------------------------------------

    def ensure_gsec(self):
        if self.gsec_made is not None:
            return
        have = set(os.listdir(GEOREP_DIR)) if os.path.isdir(GEOREP_DIR) else set()
        if "secret.pem.pub" in have and "common_secret.pem.pub" in have:
            self.gsec_made = []
            return
        gl("system::", "execute", "gsec_create")
        self.gsec_made = sorted(set(os.listdir(GEOREP_DIR)) - have)
        log("gsec_create made %s in %s (removed at the end)" % (", ".join(self.gsec_made), GEOREP_DIR))

        def undo():
            for f in self.gsec_made:
                try:
                    os.unlink(os.path.join(GEOREP_DIR, f))
                except OSError:
                    pass
        CLEANUP.push("gsec_create's files", undo)

    def setup_shape(self, shape):
        tag = "%s%d-%s" % (PREFIX, os.getpid(), "1" if shape == "1" else "4")
        c = self.cluster
        log("shape %s: creating volumes" % shape)
        want = self.args.daemons
        ref = gsy = None
        if "reference" in want:
            rp = c.create_volume(tag + "rp", shape, True)
            rs = c.create_volume(tag + "rs", shape, False)
            meta = c.create_volume(tag + "meta", "1", False) if shape == "2x2" else None
            ref = RefDaemon(self, shape, rp, rs, meta)
        if "gsyncd" in want:
            gp = c.create_volume(tag + "gp", shape, True)
            gs = c.create_volume(tag + "gs", shape, False)
            gsy = GsyDaemon(self, shape, gp, gs)
        floor = c.create_volume(tag + "fl", shape, False) if "large" in self.args.workloads else None
        daemons = [d for d in (ref, gsy) if d is not None]
        for d in daemons:
            log("shape %s: creating the %s session" % (shape, d.label))
            d.create()
            d.start()
        if self.args.profile:
            for d in daemons:
                for v in (d.pvol, d.svol):
                    gl("volume", "profile", v.name, "start")
        ready = []
        for d in daemons:
            try:
                wait_until("%s session to be Active in Changelog Crawl" % d.label, 300, d.ready, interval=2)
                self.canary(d)
            except RuntimeError as e:
                # The other daemon's figures on this shape are still worth
                # having; the table shows '-' for this one and the notes why.
                log("shape %s: %s left out: %s" % (shape, d.label, e))
                self.notes.append("%s, shape %s: left out of every workload: %s" % (d.label, shape, e))
                d.stop()
                continue
            ready.append(d)
            log("shape %s: %s session ready" % (shape, d.label))
        return ready, floor

    def profile_clear(self, d):
        for v in (d.pvol, d.svol):
            gl("volume", "profile", v.name, "info", "clear", check=False)

    def canary(self, d, tries=3):
        """Makes sure the session follows the live changelog: a small file
        must reach the secondary. The reference sometimes sits in Changelog
        Crawl after its first start and syncs nothing until restarted (its
        live feed stall); such restarts are counted in the results."""
        for attempt in range(tries):
            rel = "canary-%d" % attempt
            os.mkdir(os.path.join(d.pvol.mount, rel))
            write_file(os.path.join(d.pvol.mount, rel, "f"), b"canary\n")
            psnap = d.pview.snapshot(rel)
            ok = self.converge(d, rel, psnap, max(60, 6 * self.rollover), quiet=True) is not None
            shutil.rmtree(os.path.join(d.pvol.mount, rel))
            if ok:
                if not self.wait_gone(d, rel, self.args.timeout):
                    raise RuntimeError("%s: the canary did not disappear from the secondary" % d.label)
                return
            self.restarts.setdefault("%s %s" % (d.label, d.shape), 0)
            self.restarts["%s %s" % (d.label, d.shape)] += 1
            log("%s: nothing reached the secondary within %d s after start; restarting the session" % (
                d.label, max(60, 6 * self.rollover)))
            d.stop()
            d.start()
            wait_until("%s session to be Active in Changelog Crawl" % d.label, 300, d.ready, interval=2)
        raise RuntimeError("%s: the session syncs nothing after %d restarts" % (d.label, tries))

    # -- measuring ------------------------------------------------------

    def converge(self, d, rel, psnap, timeout, quiet=False):
        """Seconds-since-epoch when the secondary's backend matches the
        primary snapshot, or None on timeout."""
        deadline = time.time() + timeout
        last_report = time.time()
        while True:
            diffs = treecmp.backend_diff(d.pview, psnap, d.sview, rel)
            now = time.time()
            if not diffs:
                return now
            if now > deadline:
                if not quiet:
                    log("    not converged after %ds: %s" % (timeout, diffs[:3]))
                return None
            if now - last_report > 60 and not quiet:
                log("    waiting: %s" % (diffs[:2],))
                last_report = now
            time.sleep(self.args.poll)

    def verify(self, d, rel):
        """The harness comparator over the FUSE mounts; retried a little
        (the backend can match while a mount's cache lags)."""
        for _ in range(10):
            diffs = treecmp.mount_diff(os.path.join(d.pvol.mount, rel), os.path.join(d.svol.mount, rel))
            if not diffs:
                return []
            time.sleep(3)
        return diffs

    def wait_gone(self, d, rel, timeout):
        try:
            wait_until("%s gone on the secondary" % rel, timeout, lambda: not treecmp.present(d.sview, rel),
                       interval=1)
            return True
        except RuntimeError:
            return False

    def reset(self, d, rel):
        path = os.path.join(d.pvol.mount, rel)
        if os.path.lexists(path):
            shutil.rmtree(path)
        if not self.wait_gone(d, rel, self.args.timeout):
            raise RuntimeError("%s: %s did not disappear from the secondary" % (d.label, rel))
        d.settle(2)

    def prep_converge(self, d, rel):
        psnap = d.pview.snapshot(rel)
        if self.converge(d, rel, psnap, self.args.timeout) is None:
            raise RuntimeError("%s: preparation of %s did not converge" % (d.label, rel))
        d.settle(2)

    def measured(self, d, rel, write, before_window=None, restart=None):
        """Runs `write`, then waits for convergence. With `restart`, the
        session is stopped before `write` and `restart` starts it (the
        window then starts at the restart)."""
        prof = self.args.profile
        if restart:
            quiesced = d.quiesce(self.rollover * 4 + 120)
            d.stop()
            write()
            m = Meter(d)
            if prof:
                self.profile_clear(d)
            t_end = time.time()
            m.start()
            restart()
        else:
            m = Meter(d)
            if prof:
                self.profile_clear(d)
            m.start()
            write()
            t_end = time.time()
        psnap = d.pview.snapshot(rel)
        t_conv = self.converge(d, rel, psnap, self.args.timeout)
        fig = m.stop()
        if prof:
            fig["fops_primary"] = profile_counts(d.pvol.name)
            fig["fops_secondary"] = profile_counts(d.svol.name)
        fig["converge_s"] = (t_conv - t_end) if t_conv else None
        fig["write_s"] = t_end - m.t0 if not restart else None
        fig["entries"] = len(psnap)
        if restart:
            fig["quiesced"] = quiesced
        if t_conv:
            diffs = self.verify(d, rel)
            fig["verified"] = not diffs
            if diffs:
                fig["diffs"] = ["%s: %s" % x for x in diffs[:5]]
                log("    %s: trees differ after convergence: %s" % (d.label, fig["diffs"]))
        else:
            fig["verified"] = False
        return fig

    # the workloads: each returns the figures dict

    def wl_small(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)

        def write():
            os.mkdir(root)
            for i in range(s.small_dirs):
                dd = os.path.join(root, "d%03d" % i)
                os.mkdir(dd)
                for j in range(s.small_files):
                    write_file(os.path.join(dd, "f%04d" % j), rbytes(rng, s.small_size))
        return self.measured(d, rel, write)

    def wl_large(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)

        def write():
            os.mkdir(root)
            for i in range(s.large_n):
                with open(os.path.join(root, "big%02d" % i), "wb") as f:
                    for _ in range(s.large_mib):
                        f.write(rbytes(rng, 1 << 20))
        fig = self.measured(d, rel, write)
        if d.key == "gsy" and self.floor is not None and fig["verified"]:
            fig["floor_s"] = self.rsync_floor(d, rel)
        return fig

    def rsync_floor(self, d, rel):
        """A plain `rsync -a` of the same files from the primary mount to a
        mount of a scratch volume of the same shape, over the same ssh
        (the gsyncd sshd, its admin key): the floor for an rsync engine."""
        dst = os.path.join(self.floor.mount, rel)
        t = time.time()
        sh(["rsync", "-a", "-e", "ssh " + " ".join(d.sshd.ssh_opts()), os.path.join(d.pvol.mount, rel) + "/",
            "root@127.0.0.1:%s/" % dst])
        el = time.time() - t
        shutil.rmtree(dst, ignore_errors=True)
        return el

    def mixed_base(self, root, rng):
        s = self.sizes
        os.mkdir(root)
        files = []
        for i in range(s.mixed_dirs):
            dd = os.path.join(root, "d%02d" % i)
            os.mkdir(dd)
            for j in range(s.mixed_per_dir):
                p = os.path.join(dd, "f%04d" % j)
                write_file(p, rbytes(rng, 4096))
                files.append(p)
        return files

    def wl_mixed(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)
        files = self.mixed_base(root, rng)
        self.prep_converge(d, rel)
        n_ren, n_del, n_hl, n_sym, n_chm, n_tr, depth = s.mixed_ops
        order = list(files)
        rng.shuffle(order)

        def write():
            it = iter(order)
            for i in range(n_ren):
                p = next(it)
                if i % 2:  # across directories
                    q = os.path.join(root, "d%02d" % ((i // 2) % s.mixed_dirs), "ren-%05d" % i)
                else:
                    q = p + ".renamed"
                os.rename(p, q)
            for _ in range(n_del):
                os.unlink(next(it))
            for i in range(n_hl):
                p = next(it)
                os.link(p, os.path.join(os.path.dirname(p), "hl-%05d" % i))
            for i in range(n_sym):
                p = next(it)
                os.symlink(os.path.basename(p), os.path.join(os.path.dirname(p), "sl-%05d" % i))
            for i in range(n_chm):
                p = next(it)
                os.chmod(p, 0o600 if i % 2 else 0o640)
                os.chown(p, 1000 + i % 3, 1000 + i % 3)
            for _ in range(n_tr):
                os.truncate(next(it), 1000)
            deep = os.path.join(root, *["deep%02d" % i for i in range(depth)])
            os.makedirs(deep)
            write_file(os.path.join(deep, "leaf"), b"bottom\n")
        return self.measured(d, rel, write)

    def wl_renames(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)

        def write():
            os.mkdir(root)
            for r in range(s.storm_rounds):
                for n in range(s.storm_names):
                    dst = os.path.join(root, "file%02d" % n)
                    tmp = "%s.%d.tmp" % (dst, r)
                    write_file(tmp, rbytes(rng, 4096))
                    os.rename(tmp, dst)
        return self.measured(d, rel, write)

    def wl_backlog(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)
        n = s.backlog
        creates, appends, renames, chmods, deletes = (int(n * f) for f in (0.4, 0.2, 0.15, 0.15, 0.1))
        ndirs = max(1, creates // 100)

        def write():
            os.mkdir(root)
            files = []
            for i in range(creates):
                dd = os.path.join(root, "d%03d" % (i % ndirs))
                if i < ndirs:
                    os.mkdir(dd)
                p = os.path.join(dd, "f%05d" % i)
                write_file(p, rbytes(rng, 4096))
                files.append(p)
            for p in files[:appends]:
                with open(p, "ab") as f:
                    f.write(rbytes(rng, 4096))
            for p in files[:chmods]:
                os.chmod(p, 0o600)
            for i, p in enumerate(files[appends:appends + renames]):
                os.rename(p, p + ".r")
            for p in files[appends + renames:appends + renames + deletes]:
                os.unlink(p)

        def restart():
            d.start()
        return self.measured(d, rel, write, restart=restart)

    def wl_latency(self, d, rel, rng):
        s = self.sizes
        root = os.path.join(d.pvol.mount, rel)
        os.mkdir(root)
        self.prep_converge(d, rel)
        m = Meter(d)
        m.start()
        samples = []
        for i in range(s.latency_samples):
            time.sleep(rng.uniform(0, self.rollover))
            name = "s%03d" % i
            data = b"latency sample %d\n" % i
            write_file(os.path.join(root, name), data)
            t0 = time.time()
            relf = os.path.join(rel, name)
            pg = None
            for b in d.pvol.bricks:
                try:
                    pg = os.getxattr(os.path.join(b, relf), "trusted.gfid")
                    break
                except OSError:
                    pass

            def seen():
                for b in d.svol.bricks:
                    p = os.path.join(b, relf)
                    try:
                        if os.getxattr(p, "trusted.gfid") == pg and open(p, "rb").read() == data:
                            return True
                    except OSError:
                        pass
                return False
            t1 = None
            while time.time() - t0 < min(self.args.timeout, 180):
                if seen():
                    t1 = time.time()
                    break
                time.sleep(0.05)
            samples.append(t1 - t0 if t1 else None)
            log("    latency sample %d: %s" % (i, "%.2f s" % samples[-1] if t1 else "timeout"))
            if t1 is None:
                break
        fig = m.stop()
        ok = [x for x in samples if x is not None]
        fig["latency_samples"] = samples
        fig["latency_s"] = statistics.median(ok) if len(ok) == len(samples) and ok else None
        fig["verified"] = fig["latency_s"] is not None and not self.verify(d, rel)
        return fig

    # -- the run --------------------------------------------------------

    def run(self):
        a = self.args
        os.makedirs(self.base)
        CLEANUP.push("base dir", lambda: shutil.rmtree(self.base, ignore_errors=True))
        self.cluster = Cluster(self.base, PREFIX, self.rollover)
        if "reference" in a.daemons:
            self.ensure_gsec()
        for shape in a.shapes:
            mark = len(CLEANUP.actions)
            daemons, self.floor = self.setup_shape(shape)
            broken = set()
            for wl in a.workloads:
                runs = 1 if wl == "latency" else a.runs
                failed = set()
                for rep in range(runs):
                    order = daemons if rep % 2 == 0 else daemons[::-1]
                    for d in order:
                        if d.key in broken:
                            continue
                        if d.key in failed:
                            log("shape %s, %s, run %d/%d: %s skipped (an earlier run did not converge)" % (
                                shape, wl, rep + 1, runs, d.label))
                            continue
                        rel = "%s-%d" % (wl, rep)
                        rng = random.Random("%s-%d" % (wl, rep))  # the same data for both daemons
                        log("shape %s, %s, run %d/%d: %s" % (shape, wl, rep + 1, runs, d.label))
                        try:
                            fig = getattr(self, "wl_" + wl)(d, rel, rng)
                        except Exception as e:  # noqa: BLE001 - record, and go on
                            log("    %s failed: %s" % (d.label, e))
                            fig = {"error": str(e)}
                        fig.update(shape=shape, workload=wl, run=rep, daemon=d.key)
                        if "error" in fig or not fig.get("verified"):
                            failed.add(d.key)
                        self.results.append(fig)
                        self.save()
                        log("    %s" % summary(fig))
                        try:
                            self.reset(d, rel)
                        except Exception as e:  # noqa: BLE001
                            # Its secondary no longer follows: later runs of
                            # this daemon on this shape would measure nothing.
                            log("    reset failed: %s; no more %s runs on this shape" % (e, d.label))
                            broken.add(d.key)
                            self.notes.append("%s, shape %s: after %s run %d the run's directory did not disappear "
                                              "from the secondary (%s); its later workloads on this shape were "
                                              "not run" % (d.label, shape, wl, rep + 1, e))
                            self.save()
            log("shape %s: tearing down" % shape)
            CLEANUP.run(mark)
        return self.results

    def save(self):
        path = os.path.join(self.args.out, "results.json")
        with open(path, "w") as f:
            json.dump({"meta": self.meta(), "results": self.results}, f, indent=1)

    def meta(self):
        return machine_info(self)


def summary(fig):
    if "error" in fig:
        return "error: " + fig["error"]
    keys = ("converge_s", "latency_s", "cpu_own", "cpu_children", "cpu_gluster", "rss_mib", "pss_mib", "ssh_mb", "floor_s")
    return ", ".join("%s=%s" % (k, "%.2f" % fig[k] if isinstance(fig.get(k), float) else fig.get(k))
                     for k in keys if k in fig) + ("" if fig.get("verified") else " (NOT VERIFIED)")


def machine_info(bench):
    def first(cmd):
        p = sh(cmd, check=False, quiet=True)
        return p.stdout.splitlines()[0].strip() if p.stdout else "?"
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_mib": mem,
        "kernel": os.uname().release,
        "glusterfs": first(["glusterfs", "--version"]),
        "rsync_default": first(["rsync", "--version"]),
        "rsync_reference": first([os.path.join(bench.rsync32_dir, "rsync"), "--version"])
        if bench.ref_mode == "rsync-3.2" else first(["rsync", "--version"]) + " with secondary-access-mount",
        "gsyncd": first([bench.gsyncd, "--version"]),
        "python_reference": first(["/usr/bin/python3", "--version"]),
        "rollover": bench.rollover,
        "sync_jobs": bench.sync_jobs,
        "quick": bench.quick,
        "runs": bench.args.runs,
        "timeout": bench.args.timeout,
        "restarts_after_start": bench.restarts,
        "notes": bench.notes,
        "poll": bench.args.poll,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join(sys.argv),
    }


# ---------------------------------------------------------------- report

FIGS = [
    ("converge_s", "converged after writes, s", 1),
    ("latency_s", "write-to-visible latency, s", 1),
    ("floor_s", "plain rsync -a of the same files, s", 1),
    ("cpu_own", "CPU daemon processes, s", 1),
    ("cpu_own_user", "CPU daemon processes, of it in user space, s", 1),
    ("cpu_children", "CPU children (ssh/sshd/rsync/tar), s", 1),
    ("cpu_aux", "CPU GlusterFS aux mounts, s", 1),
    ("cpu_sbricks", "CPU GlusterFS secondary bricks, s", 1),
    ("cpu_pbricks", "CPU GlusterFS primary bricks (+ the writes), s", 1),
    ("cpu_total", "CPU daemon + children + GlusterFS, s", 1),
    ("rss_mib", "peak RSS daemon processes (sum of VmHWM), MiB", 1),
    ("pss_mib", "peak PSS daemon processes (sum of sampled Pss), MiB", 1),
    ("ssh_mb", "bytes over ssh, MB", 1),
]
WORKLOADS = ["small", "large", "mixed", "renames", "backlog", "latency"]


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(vals, n_runs):
    """median [min-max] of the measured values; '-' if none."""
    ok = [v for v in vals if v is not None]
    if not ok:
        return "-", None
    med = statistics.median(ok)
    s = fmt(med)
    if len(ok) > 1:
        s += " [%s-%s]" % (fmt(min(ok)), fmt(max(ok)))
    if len(ok) < n_runs:
        s += " (%d of %d runs)" % (len(ok), n_runs)
    return s, med


def table(results, meta):
    out = []
    out.append("Reference: Debian glusterfs-server %s (Debian's python3), file data by %s. gsyncd: %s, with "
               "the system's %s." % (meta.get("glusterfs", "?").replace("glusterfs ", ""),
                                     meta.get("rsync_reference", "?"), meta.get("gsyncd", "?"),
                                     meta.get("rsync_default", "?")))
    out.append("Both: changelog.rollover-time %s s, sync-jobs %s, sync-method rsync; convergence timeout %s s. "
               "Cells: median [min-max] over the runs that converged and verified; ratio = gsyncd / reference "
               "(medians); '-' = no such figure or no valid run." % (
                   meta.get("rollover"), meta.get("sync_jobs"), meta.get("timeout", "?")))
    if meta.get("restarts_after_start"):
        out.append("Sessions restarted at setup because nothing reached the secondary after their start: %s." % (
            ", ".join("%s %s: %d" % (k.split()[0], "one brick" if k.split()[1] == "1" else "2x2", v)
                      for k, v in sorted(meta["restarts_after_start"].items()))))
    for n in meta.get("notes") or []:
        out.append("Note: " + n + ".")
    out.append("")
    shapes = []
    for r in results:
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    for shape in shapes:
        out.append("### %s" % ("One brick" if shape == "1" else "2x2 distributed-replicate"))
        out.append("")
        out.append("| workload | figure | reference | gsyncd | ratio |")
        out.append("|---|---|---|---|---|")
        for wl in WORKLOADS:
            rs = [r for r in results if r["shape"] == shape and r["workload"] == wl]
            if not rs:
                continue
            for key, label, _ in FIGS:
                if not any(key in r for r in rs):
                    continue
                cells = []
                meds = []
                for dk in ("ref", "gsy"):
                    runs = [r for r in rs if r["daemon"] == dk]
                    good = [r for r in runs if "error" not in r and r.get("verified")]
                    if key == "latency_s":
                        vals = [x for r in good for x in (r.get("latency_samples") or [])]
                        n = len(vals)
                    elif key == "floor_s" and dk == "ref":
                        vals, n = [], 0
                    else:
                        vals, n = [r.get(key) for r in good], len(good)
                    c, med = cell(vals, n)
                    if key in ("converge_s", "latency_s"):
                        notes = []
                        nc = sum(1 for r in runs if "error" not in r and r.get(key) is None)
                        nv = sum(1 for r in runs if "error" not in r and r.get(key) is not None
                                 and not r.get("verified"))
                        ne = sum(1 for r in runs if "error" in r)
                        if nc:
                            notes.append("%d of %d runs not converged in %s s" % (nc, len(runs),
                                                                                  meta.get("timeout", "?")))
                        if nv:
                            notes.append("%d of %d runs converged but differ over the mounts" % (nv, len(runs)))
                        if ne:
                            notes.append("%d of %d runs failed" % (ne, len(runs)))
                        if notes:
                            c = ("" if c == "-" else c + " ") + "(" + "; ".join(notes) + ")"
                    cells.append(c)
                    meds.append(med)
                if key == "floor_s":
                    gc = [r.get("converge_s") for r in rs if r["daemon"] == "gsy" and r.get("verified")]
                    gcm = statistics.median(gc) if gc else None
                    ratio = "gsyncd/floor %s" % fmt(gcm / meds[1]) if gcm and meds[1] else "-"
                else:
                    ratio = fmt(meds[1] / meds[0]) if meds[0] and meds[1] is not None else "-"
                out.append("| %s | %s | %s | %s | %s |" % (wl, label, cells[0], cells[1], ratio))
        out.append("")
    return "\n".join(out)


def fop_table(results):
    """Brick file operations per run (profile mode): median over runs,
    primary and secondary volume, reference vs gsyncd."""
    rs = [r for r in results if "fops_secondary" in r]
    if not rs:
        return ""
    out = ["### Brick file operations (`--profile`; calls summed over the bricks, median over runs)", ""]
    keys = []
    for r in rs:
        if (r["shape"], r["workload"]) not in keys:
            keys.append((r["shape"], r["workload"]))
    out.append("| shape | workload | side | fop | reference | gsyncd | ratio |")
    out.append("|---|---|---|---|---|---|---|")
    for shape, wl in keys:
        for side in ("secondary", "primary"):
            k = "fops_" + side
            per = {dk: [r[k] for r in rs if r["shape"] == shape and r["workload"] == wl and r["daemon"] == dk
                        and r.get("verified")] for dk in ("ref", "gsy")}
            fops = sorted({f for runs in per.values() for c in runs for f in c},
                          key=lambda f: -max([c.get(f, 0) for runs in per.values() for c in runs] or [0]))
            tot = {dk: statistics.median([sum(c.values()) for c in per[dk]]) if per[dk] else None for dk in per}
            for f in ["(all)"] + fops:
                med = {}
                for dk in ("ref", "gsy"):
                    if f == "(all)":
                        med[dk] = tot[dk]
                    else:
                        med[dk] = statistics.median([c.get(f, 0) for c in per[dk]]) if per[dk] else None
                if f != "(all)" and max(v or 0 for v in med.values()) < 20:
                    continue
                ratio = fmt(med["gsy"] / med["ref"]) if med["ref"] and med["gsy"] is not None else "-"
                out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    shape, wl, side, f, "-" if med["ref"] is None else "%.0f" % med["ref"],
                    "-" if med["gsy"] is None else "%.0f" % med["gsy"], ratio))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- sweep

def sweep():
    """Removes what dead runs of this benchmark left behind."""
    alive = lambda pid: os.path.exists("/proc/%d" % pid)  # noqa: E731
    owners = set()
    vols = (gl("volume", "list", check=False) or "").split()
    for v in vols:
        m = re.match(PREFIX + r"(\d+)-", v)
        if m and not alive(int(m.group(1))):
            owners.add(int(m.group(1)))
    for d in os.listdir("/var/tmp"):
        m = re.match(PREFIX + r"-(\d+)$", d)
        if m and not alive(int(m.group(1))):
            owners.add(int(m.group(1)))
    for pid in owners:
        log("sweeping what run %d left" % pid)
        tag = "%s%d-" % (PREFIX, pid)
        for sess in os.listdir(GEOREP_DIR) if os.path.isdir(GEOREP_DIR) else []:
            if sess.startswith(tag):
                pv, sv = sess.split("_127.0.0.1_")
                gl("volume", "geo-replication", pv, "127.0.0.1::" + sv, "stop", "force", check=False)
                gl("volume", "geo-replication", pv, "127.0.0.1::" + sv, "delete", check=False)
                for d in (os.path.join(GLUSTER_LOG, "geo-replication", sess),
                          os.path.join(GLUSTER_LOG, "geo-replication-secondaries", sess),
                          os.path.join(REF_MISC, sess), os.path.join(GEOREP_DIR, sess)):
                    shutil.rmtree(d, ignore_errors=True)
        base = "/var/tmp/%s-%d" % (PREFIX, pid)
        for p in all_pids():
            a = cmdline(p)
            if a and any(tag in x or base in x for x in a) and read_stat(p) and read_stat(p)[1] != "glusterfsd":
                try:
                    os.kill(p, signal.SIGTERM)
                except OSError:
                    pass
        with open("/proc/mounts") as f:
            for line in f:
                src, mnt = line.split()[:2]
                if tag in src or mnt.startswith(base):
                    sh(["umount", "-l", mnt], check=False)
        for v in vols:
            if v.startswith(tag):
                gl("volume", "stop", v, "force", check=False)
                gl("volume", "delete", v, check=False)
        shutil.rmtree(base, ignore_errors=True)
        for cg in os.listdir(CG_ROOT):
            if cg.startswith(tag[:-1]):
                try:
                    os.rmdir(os.path.join(CG_ROOT, cg))
                except OSError as e:
                    log("cannot remove cgroup %s: %s" % (cg, e))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small workloads, one run each")
    ap.add_argument("--shapes", default="1,2x2", help="volume shapes: 1 (one brick), 2x2 (default: both)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=None, help="runs per workload and daemon (default 3; quick 1)")
    ap.add_argument("--rollover", type=int, default=None, help="changelog.rollover-time (default 15; quick 5)")
    ap.add_argument("--sync-jobs", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=None, help="convergence timeout, s (default 900; quick 90)")
    ap.add_argument("--poll", type=float, default=0.5, help="convergence poll interval, s")
    ap.add_argument("--ref-rsync", choices=["rsync-3.2", "access-mount"], default="rsync-3.2")
    ap.add_argument("--rsync32-dir", default="")
    ap.add_argument("--gsyncd", required=False)
    ap.add_argument("--daemons", default="reference,gsyncd",
                    help="which sessions to run (default both; one alone gives no ratios, for iterating)")
    ap.add_argument("--out", default=None, help="directory for results.json and table.md")
    ap.add_argument("--profile", action="store_true",
                    help="also count the bricks' file operations per run (gluster volume profile); adds overhead, "
                         "so not for the figures")
    ap.add_argument("--sweep", action="store_true", help="only remove what killed runs left behind")
    ap.add_argument("--table", metavar="RESULTS_JSON", help="only print the table of a results.json")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            j = json.load(f)
        print(table(j["results"], j["meta"]))
        print(fop_table(j["results"]))
        return 0
    if os.geteuid() != 0:
        sys.exit("compare.py: run as root (glusterd, FUSE mounts, cgroups)")
    sweep()
    if a.sweep:
        return 0
    a.shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for w in a.workloads:
        if w not in WORKLOADS:
            sys.exit("unknown workload %s (have %s)" % (w, ", ".join(WORKLOADS)))
    a.daemons = [d.strip() for d in a.daemons.split(",") if d.strip()]
    for d in a.daemons:
        if d not in ("reference", "gsyncd"):
            sys.exit("unknown daemon %s (have reference, gsyncd)" % d)
    a.runs = a.runs or (1 if a.quick else 3)
    a.rollover = a.rollover or (5 if a.quick else 15)
    a.timeout = a.timeout or (90 if a.quick else 900)
    a.out = a.out or "/var/tmp/gsyb-results/%s" % time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(a.out, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    b = Bench(a)
    try:
        b.run()
    except KeyboardInterrupt as e:
        log("interrupted (%s); cleaning up" % e)
    except Exception as e:  # noqa: BLE001
        log("failed: %s; cleaning up" % e)
        import traceback
        traceback.print_exc()
    finally:
        CLEANUP.run()
    if b.results:
        b.save()
        t = table(b.results, b.meta()) + "\n" + fop_table(b.results)
        with open(os.path.join(a.out, "table.md"), "w") as f:
            f.write(t + "\n")
        print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
