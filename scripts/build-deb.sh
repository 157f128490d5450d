#!/usr/bin/env bash
# Builds the gsyncd Debian package from packaging/debian/ and checks it with
# lintian (an error fails the build; warnings are printed).
#
#   scripts/build-deb.sh [--bin PATH] [--out DIR] [--no-lintian]
#
# --bin   package this gsyncd binary instead of building one with
#         `cargo build --release --locked` (tests/install.rs passes the
#         binary under test)
# --out   where the .deb files go (default: $CARGO_TARGET_DIR or target/,
#         under packages/)
#
# Installs what it needs with apt-get (dpkg-dev, debhelper, lintian and
# the shell linter) when run as root. The last line it prints is the .deb's path.
# DEB_BUILD_OPTIONS is passed on (noautodbgsym skips the -dbgsym package).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

bin="" out="" lint=true
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=${2:?--bin needs a path}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --no-lintian) lint=false; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done

install_packages dpkg-dev debhelper fakeroot lintian shellcheck

target=${CARGO_TARGET_DIR:-$PWD/target}
out=$(mkdir -p "${out:-$target/packages}" && cd "${out:-$target/packages}" && pwd)

if [ -z "$bin" ]; then
    command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
    echo "== cargo build --release --locked" >&2
    cargo build --release --locked >&2
    bin=$target/release/gsyncd
fi
[ -x "$bin" ] || die "$bin is not an executable file"

# The package's version is debian/changelog's; it must be the crate's.
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
[ "$deb_version" = "$crate_version" ] ||
    die "packaging/debian/changelog is at $deb_version but Cargo.toml at $crate_version: add a changelog entry (dch -c packaging/debian/changelog -v $crate_version)"
bin_version=$("$bin" -V)
[ "$bin_version" = "gsyncd $crate_version" ] || die "$bin says \"$bin_version\", not gsyncd $crate_version: rebuild it"

echo "== shellcheck maintainer scripts" >&2
shellcheck -s sh packaging/debian/gsyncd.postinst packaging/debian/gsyncd.prerm packaging/debian/gsyncd.postrm
shellcheck -x packaging/install.sh scripts/build-deb.sh scripts/build-rpm.sh

# A source tree holding only what packaging/install.sh installs, with the
# Debian directory in its place and the binary as build/gsyncd.
work=$out/deb-build
stage=$work/gsyncd-$deb_version
rm -rf "$work"
mkdir -p "$stage/build"
cp -r units man README.md "$stage/"
mkdir "$stage/packaging"
cp -r packaging/install.sh packaging/completion packaging/example-session.toml "$stage/packaging/"
cp -r packaging/debian "$stage/debian"
install -m 0755 "$bin" "$stage/build/gsyncd"

echo "== dpkg-buildpackage -b" >&2
(cd "$stage" && dpkg-buildpackage -b -us -uc >&2)

arch=$(dpkg --print-architecture)
deb=$out/gsyncd_${deb_version}_$arch.deb
rm -f "$out"/gsyncd_*.deb "$out"/gsyncd-dbgsym_*.deb
mv "$work"/gsyncd_"${deb_version}"_"$arch".deb "$out/"
for f in "$work"/gsyncd-dbgsym_*.deb; do
    [ -e "$f" ] && mv "$f" "$out/"
done
mv "$work"/*.changes "$work"/*.buildinfo "$out/" 2>/dev/null || true

echo "== contents of $(basename "$deb")" >&2
dpkg-deb --info "$deb" | sed -n '/Package:/,$p' >&2
dpkg-deb --contents "$deb" >&2

if $lint; then
    echo "== lintian" >&2
    # --fail-on error: warnings are printed (and justified in
    # packaging/README.md) but do not fail the build.
    lintian --fail-on error --display-level '>=info' "$deb" >&2 || die "lintian reports errors (above)"
    echo "== lintian: no errors" >&2
fi

echo "$deb"
