#!/usr/bin/env bash
# gsyncd demo on a throwaway loopback cluster.
#
#   ./scripts/demo.sh          install what is needed, build, bring up a primary
#                              and a secondary volume on this machine and a
#                              private sshd on 127.0.0.1 (the secondary side,
#                              behind the ssh gate), run a session, and show
#                              the secondary catching up with the primary
#   ./scripts/demo.sh --down   remove everything the demo created
#
# Run as root on Debian 12. Everything lives under /var/lib/gsyncd-demo, the
# session file is <config dir>/demo.toml (GSYNCD_CONFIG_DIR, default
# /etc/gsyncd), and glusterd is stopped again on --down if the demo started it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

DEMO=/var/lib/gsyncd-demo
HOST=${GSYNCD_DEMO_HOST:-127.0.0.2}   # glusterd refuses 127.0.0.1 for bricks
PV=gsyncd-demo-primary
SV=gsyncd-demo-secondary
SESSION=demo
CONFIG_DIR=${GSYNCD_CONFIG_DIR:-/etc/gsyncd}
SSH_PORT=${GSYNCD_DEMO_SSH_PORT:-2222}
export GSYNCD_CONFIG_DIR=$CONFIG_DIR

gl() { gluster --mode=script "$@"; }

down() {
    echo "== removing the demo"
    for side in primary secondary; do
        if mountpoint -q "$DEMO/mnt/$side" 2>/dev/null; then
            umount "$DEMO/mnt/$side" || umount -l "$DEMO/mnt/$side"
        fi
    done
    if pgrep -x glusterd >/dev/null; then
        for v in "$PV" "$SV"; do
            if gl volume info "$v" >/dev/null 2>&1; then
                gl volume stop "$v" force >/dev/null || true
                gl volume delete "$v" >/dev/null || true
            fi
        done
    fi
    if [ -f "$DEMO/sshd/sshd.pid" ]; then
        kill "$(cat "$DEMO/sshd/sshd.pid")" 2>/dev/null || true
    fi
    if [ -f "$DEMO/started-glusterd" ]; then
        pkill -x glusterd || true
        pkill -x glusterfsd || true
    fi
    rm -f "$CONFIG_DIR/$SESSION.toml"
    rm -rf "$DEMO"
    echo "== demo removed"
}

if [ "${1:-}" = "--down" ]; then
    require_root
    down
    exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [--down]"

require_root
install_deps

echo "== building gsyncd (release)"
cargo build --release --locked --quiet
GSYNCD=$PWD/target/release/gsyncd
"$GSYNCD" -V

mkdir -p "$DEMO"
if ! pgrep -x glusterd >/dev/null; then
    echo "== starting glusterd"
    glusterd --log-level WARNING
    touch "$DEMO/started-glusterd"
    for _ in $(seq 60); do gl volume list >/dev/null 2>&1 && break; sleep 0.5; done
fi

for v in "$PV" "$SV"; do
    if ! gl volume info "$v" >/dev/null 2>&1; then
        echo "== creating volume $v"
        mkdir -p "$DEMO/bricks/$v"
        gl volume create "$v" "$HOST:$DEMO/bricks/$v" force >/dev/null
        if [ "$v" = "$PV" ]; then
            gl volume set "$v" changelog.changelog on >/dev/null
            gl volume set "$v" changelog.rollover-time 3 >/dev/null
            gl volume set "$v" geo-replication.indexing on >/dev/null
        fi
        gl volume start "$v" >/dev/null
    fi
done
for side in primary secondary; do
    vol=$PV; [ "$side" = secondary ] && vol=$SV
    mkdir -p "$DEMO/mnt/$side"
    mountpoint -q "$DEMO/mnt/$side" || mount -t glusterfs "$HOST:/$vol" "$DEMO/mnt/$side"
done

echo "== a private sshd on 127.0.0.1:$SSH_PORT stands in for the secondary node's"
mkdir -p "$DEMO/sshd" /run/sshd
[ -f "$DEMO/sshd/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DEMO/sshd/host_key"
# The operator's own access to the secondary (what `create --push-key` uses).
[ -f "$DEMO/sshd/admin_key" ] || ssh-keygen -q -t ed25519 -N '' -C demo-admin -f "$DEMO/sshd/admin_key"
[ -f "$DEMO/sshd/authorized_keys" ] || cp "$DEMO/sshd/admin_key.pub" "$DEMO/sshd/authorized_keys"
cat > "$DEMO/sshd/sshd_config" <<EOC
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $DEMO/sshd/host_key
PidFile $DEMO/sshd/sshd.pid
AuthorizedKeysFile $DEMO/sshd/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
EOC
if ! { [ -f "$DEMO/sshd/sshd.pid" ] && kill -0 "$(cat "$DEMO/sshd/sshd.pid")" 2>/dev/null; }; then
    /usr/sbin/sshd -f "$DEMO/sshd/sshd_config"
fi

echo "== gsyncd create: checks both volumes and the ssh path, makes the session key and"
echo "   installs it on the secondary behind 'gsyncd ssh-gate' (--push-key, with the admin key)"
eval "$(ssh-agent -s)" >/dev/null
trap 'ssh-agent -k >/dev/null 2>&1 || true' EXIT
ssh-add -q "$DEMO/sshd/admin_key"
force=()
[ -f "$CONFIG_DIR/$SESSION.toml" ] && force=(--force)
"$GSYNCD" create "$SESSION" --primary "$PV" --secondary "root@127.0.0.1::$SV" --ssh-port "$SSH_PORT" \
    --push-key --authorized-keys "$DEMO/sshd/authorized_keys" "${force[@]}" \
    --set "state-dir=$DEMO/state" --set "run-dir=$DEMO/run" --set "remote-gsyncd=$GSYNCD" --set sync-jobs=3 \
    2>&1 | sed 's/^/   /'
ssh-agent -k >/dev/null 2>&1 || true
trap - EXIT
echo "   authorized_keys on the secondary now:"
grep ssh-gate "$DEMO/sshd/authorized_keys" | cut -c1-120 | sed 's/^/     /; s/$/.../'
"$GSYNCD" config get "$SESSION" | sed 's/^/   /'

P=$DEMO/mnt/primary
S=$DEMO/mnt/secondary
echo "== writing a sample tree on the primary (before the session starts)"
mkdir -p "$P/demo/docs/deep/er"
for i in $(seq 1 20); do echo "file $i" > "$P/demo/docs/f$i.txt"; done
head -c 2000000 /dev/urandom > "$P/demo/docs/deep/er/blob.bin"
ln -sf docs/f1.txt "$P/demo/link"
ln -f "$P/demo/docs/f2.txt" "$P/demo/hardlink"

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
wait_converged() {
    for _ in $(seq 240); do
        diff -r --no-dereference "$P/demo" "$S/demo" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "   the secondary did not catch up; last lines of $DEMO/supervise.log:"
    tail -20 "$DEMO/supervise.log" | sed 's/^/   /'
    return 1
}

echo "== starting the session (gsyncd supervise $SESSION)"
t0=$(date +%s.%N)
"$GSYNCD" --log-target stderr supervise "$SESSION" > /dev/null 2> "$DEMO/supervise.log" &
sup=$!
trap 'kill -TERM $sup 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "all children ready" "$DEMO/supervise.log" 2>/dev/null && break; sleep 0.2; done
ps --forest -o pid,args -p "$sup" --ppid "$sup" | cut -c1-140 | sed "s/^/   /" || true
wait_converged
echo "   initial sync (crawl of what existed): the secondary matches after $(elapsed "$t0") s"

echo "== live changes: rename, append, delete, chmod, a new tree"
mv "$P/demo/docs/f3.txt" "$P/demo/docs/renamed.txt"
echo "appended" >> "$P/demo/docs/f4.txt"
rm "$P/demo/docs/f5.txt"
chmod 600 "$P/demo/docs/f6.txt"
mkdir -p "$P/demo/new/tree" && echo hello > "$P/demo/new/tree/file"
t0=$(date +%s.%N)
wait_converged
echo "   the secondary matches again after $(elapsed "$t0") s (changelog rollover-time is 3 s)"
echo "   diff -r $P/demo $S/demo: no differences; the GFIDs agree too, e.g. demo/docs/renamed.txt:"
echo "     primary   $(getfattr --only-values -n glusterfs.gfid.string "$P/demo/docs/renamed.txt" 2>/dev/null)"
echo "     secondary $(getfattr --only-values -n glusterfs.gfid.string "$S/demo/docs/renamed.txt" 2>/dev/null)"
grep -E "crawl walked the brick|reconcile done|batch synced" "$DEMO/supervise.log" | sed 's/.*INFO //' | cut -c1-150 | tail -4 | sed 's/^/   /'
echo "== gsyncd status $SESSION --detail (from the running monitor)"
"$GSYNCD" status "$SESSION" --detail | sed 's/^/   /'
echo "== gsyncd checkpoint: set now, wait until the secondary has everything changed before it"
"$GSYNCD" checkpoint set "$SESSION" now | sed 's/^/   /'
"$GSYNCD" checkpoint wait "$SESSION" --timeout 60 | sed 's/^/   /'
"$GSYNCD" failures list "$SESSION" | sed 's/^/   /'
kill -TERM "$sup"
wait "$sup" || true
trap - EXIT
echo "   session stopped (SIGTERM); its log: $DEMO/supervise.log"

cat <<EOF

== what works in this version
   - gsyncd create (checks each step, names its fix, installs the key behind the ssh gate)
   - replication of a brick: a crawl of what existed (checkpointed, then reconciled), then
     live changelog sync of entries (by GFID), metadata and data (rsync or tar, checked on
     arrival), progress (stime) on the brick, a failure ledger; one Active worker per replica
     set; gfid conflicts resolved with the primary as truth; journal gaps crawled
   - gsyncd status (from the monitor or the reference's status files), checkpoints that
     complete only when nothing older failed, gsyncd failures for the failure ledger
   - the secondary side: gsyncd secondary behind the ssh gate (man/gsyncd-secondary.8)
   - session configuration (gsyncd config ...), gsyncd changelog show, the supervisor with
     systemd notify/watchdog (units/gsyncd@.service), gsyncd cleanup-mounts

Remove everything with: $0 --down
EOF
