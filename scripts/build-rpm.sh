#!/usr/bin/env bash
# Builds the gsyncd RPM from packaging/rpm/gsyncd.spec with rpmbuild (on
# Debian: the rpm package) and checks it with rpmlint (an error fails the
# build; warnings are printed).
#
#   scripts/build-rpm.sh [--bin PATH] [--out DIR] [--no-rpmlint]
#
# --bin   package this gsyncd binary instead of building one with
#         `cargo build --release --locked`
# --out   where the .rpm goes (default: $CARGO_TARGET_DIR or target/, under
#         packages/)
#
# Installs what it needs with apt-get (rpm, rpmlint) when run as root. The
# last line it prints is the .rpm's path.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

bin="" out="" lint=true
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=${2:?--bin needs a path}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --no-rpmlint) lint=false; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done

if command -v rpmbuild >/dev/null 2>&1 && command -v rpmlint >/dev/null 2>&1; then
    : # an RPM-based system, or Debian with both installed
else
    install_packages rpm rpmlint
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
out=$(mkdir -p "${out:-$target/packages}" && cd "${out:-$target/packages}" && pwd)

if [ -z "$bin" ]; then
    command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
    echo "== cargo build --release --locked" >&2
    cargo build --release --locked >&2
    bin=$target/release/gsyncd
fi
[ -x "$bin" ] || die "$bin is not an executable file"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
bin_version=$("$bin" -V)
[ "$bin_version" = "gsyncd $version" ] || die "$bin says \"$bin_version\", not gsyncd $version: rebuild it"

# rpm's own systemd macros where it has them (systemd-rpm-macros on Fedora,
# EL, SUSE); Debian's rpm has none, so the plain equivalents are loaded.
load=()
if [ -z "$(rpm --eval '%{?_unitdir}')" ]; then
    load=(--load="$PWD/packaging/rpm/macros.systemd-fallback")
fi

top=$out/rpm-build
rm -rf "$top"
mkdir -p "$top"
echo "== rpmbuild -bb packaging/rpm/gsyncd.spec" >&2
rpmbuild -bb "${load[@]}" \
    --define "_topdir $top" \
    --define "gsyncd_src $PWD" \
    --define "gsyncd_bin $bin" \
    --define "gsyncd_version $version" \
    --define "packager gsyncd maintainers <maintainers@users.noreply.r-seed-b4f01dab.example>" \
    packaging/rpm/gsyncd.spec >&2

rpmfile=$(find "$top/RPMS" -name "gsyncd-$version-*.rpm" | head -n1)
[ -n "$rpmfile" ] || die "rpmbuild made no gsyncd-$version rpm under $top/RPMS"
rm -f "$out"/gsyncd-*.rpm
mv "$rpmfile" "$out/"
rpmfile=$out/$(basename "$rpmfile")

echo "== contents of $(basename "$rpmfile")" >&2
rpm -qp --info "$rpmfile" >&2
rpm -qp --requires "$rpmfile" >&2
rpm -qlvp "$rpmfile" >&2
rpm -qp --scripts "$rpmfile" >&2

if $lint; then
    echo "== rpmlint" >&2
    # Exit status 64 means errors; 66 is "badness over threshold" (warnings
    # only count there with a badness configured, which we do not).
    rc=0
    rpmlint --config packaging/rpm/rpmlint.toml packaging/rpm/gsyncd.spec "$rpmfile" >&2 || rc=$?
    case "$rc" in
        0) echo "== rpmlint: no errors" >&2 ;;
        *) die "rpmlint reports errors (above; exit status $rc)" ;;
    esac
fi

echo "$rpmfile"
