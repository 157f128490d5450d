#!/usr/bin/env bash
# Side-by-side benchmark of gsyncd and the reference geo-replication (the
# Python gsyncd of Debian's glusterfs-server, driven by `gluster volume
# geo-replication`) on loopback volumes of this machine. Prints a table of
# medians, spreads and gsyncd/reference ratios; see bench/README.md.
#
#   ./bench/compare.sh [--quick] [compare.py options]
#
#   --quick                 small workloads, one run each, rollover 5 s (~10 min)
#   --shapes 1,2x2          volume shapes (one brick, 2x2 distributed-replicate)
#   --workloads small,large,mixed,renames,backlog,latency
#   --runs N                runs per workload and daemon (default 3)
#   --rollover S            changelog.rollover-time for both (default 15)
#   --sync-jobs N           sync-jobs for both (default 3)
#   --ref-rsync rsync-3.2|access-mount
#                           how the reference gets file data across (default
#                           rsync-3.2: Debian bookworm's rsync 3.2.x, unpacked
#                           privately; access-mount: the default rsync with
#                           secondary-access-mount true)
#   --daemons reference,gsyncd
#                           which sessions to run (default both; one alone
#                           gives no ratios: for iterating on one daemon)
#   --out DIR               where results.json and table.md go
#   --sweep                 only remove what a killed run left behind
#
# Run as root on Debian 12 with glusterfs-server installed. Everything the
# run creates is named gsyb<pid>... (volumes, sessions, cgroups) or lives
# under /var/tmp/gsyb-<pid>; it is removed at the end. glusterd is started
# only if none runs (and then stopped again).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root" >&2; exit 1; }
for c in gluster glusterd rsync ssh sshd python3 getfattr; do
    command -v "$c" >/dev/null || { echo "compare.sh: $c is missing (install glusterfs-server, rsync, openssh-server, attr)" >&2; exit 1; }
done
[ -x /usr/lib/x86_64-linux-gnu/glusterfs/python/syncdaemon/gsyncd.py ] || [ -f /usr/lib/x86_64-linux-gnu/glusterfs/python/syncdaemon/gsyncd.py ] \
    || { echo "compare.sh: the reference daemon (glusterfs-server's syncdaemon) is not installed" >&2; exit 1; }

args=("$@")
ref_rsync=rsync-3.2
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --ref-rsync) ref_rsync=${args[$((i + 1))]:-} ;;
        --ref-rsync=*) ref_rsync=${args[$i]#--ref-rsync=} ;;
        --sweep|--table|-h|--help) exec /usr/bin/python3 -B bench/compare.py "$@" ;;
    esac
done

echo "== building gsyncd (release)" >&2
cargo build --release --locked --quiet --bin gsyncd
tmp=$(mktemp -d /var/tmp/gsyb-rsync.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A copy: a rebuild during the run must not change the binary under test.
gsyncd=$tmp/gsyncd
cp "${CARGO_TARGET_DIR:-target}/release/gsyncd" "$gsyncd"
extra=()
if [ "$ref_rsync" = rsync-3.2 ]; then
    # The reference cannot sync file data with rsync >= 3.4 (it no longer
    # follows /proc/<pid>/cwd into the lazily unmounted secondary mount):
    # give it Debian's rsync 3.2.x from bookworm main, unpacked privately
    # (the system's rsync stays as it is; gsyncd uses that one).
    ver=$(apt-cache madison rsync 2>/dev/null | awk '$3 ~ /^3\.2\./ { print $3; exit }')
    if [ -n "$ver" ] && (cd "$tmp" && apt-get download -q "rsync=$ver" >/dev/null 2>&1) \
        && dpkg-deb -x "$tmp"/rsync_*.deb "$tmp/x"; then
        echo "== the reference uses rsync $ver (unpacked in $tmp)" >&2
        extra=(--rsync32-dir "$tmp/x/usr/bin")
    else
        echo "== rsync 3.2.x from bookworm main is not available; the reference runs with secondary-access-mount true" >&2
        extra=(--ref-rsync access-mount)
    fi
fi
/usr/bin/python3 -B bench/compare.py --gsyncd "$gsyncd" "${args[@]}" "${extra[@]}"
