#!/usr/bin/env bash
# Side-by-side changelog record handling: gsyncd's parser vs the reference
# daemon's Python record handling, on the same generated changelogs, on this
# machine. Prints both results and the ratio.
#
#   ./bench/run.sh [RECORDS]        (default 2000000)
#
# Needs glusterfs-server installed (the reference's syncdaemon is imported,
# not copied).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-2000000}
work=$(mktemp -d /var/tmp/gsyncd-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

ours=$(cargo bench --quiet --bench changelog_parse -- --records "$records" --out "$work" | tail -1)
theirs=$(python3 bench/reference_parse.py --repeat 3 "$work/processed" | tail -1)
echo "gsyncd:    $ours"
echo "reference: $theirs"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("records/s: gsyncd %.0f, reference %.0f, ratio %.1fx" % (
    o["records_per_sec"], t["records_per_sec"], o["records_per_sec"] / t["records_per_sec"]))
PY
