#!/usr/bin/env bash
# Lays out gsyncd's installed files under DESTDIR: the one list of what a
# package contains, used by debian/rules and rpm/gsyncd.spec alike, so that the
# two packages cannot drift apart.
#
#   packaging/install.sh --bin PATH --destdir DIR [--unitdir DIR] [--gzip-man]
#
# --bin      the gsyncd binary to install (built beforehand, e.g. by
#            `cargo build --release --locked`)
# --destdir  staging root (debian/gsyncd, %{buildroot}, ...)
# --unitdir  where systemd units go: /lib/systemd/system on Debian 12 (the
#            default), /usr/lib/systemd/system on RPM systems
# --gzip-man compress the man pages (dh_compress and rpm's brp-compress do it
#            for packages; a plain `make install`-style use wants it here)
#
# Run from anywhere: source files are taken relative to this script.
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 1; }

src=$(cd "$(dirname "$0")/.." && pwd)
bin="" destdir="" unitdir=/lib/systemd/system gzip_man=false
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=${2:?--bin needs a path}; shift 2 ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --unitdir) unitdir=${2:?--unitdir needs a directory}; shift 2 ;;
        --gzip-man) gzip_man=true; shift ;;
        *) die "unknown argument: $1 (see the comment at the top of $0)" ;;
    esac
done
[ -n "$bin" ] || die "--bin is required"
[ -n "$destdir" ] || die "--destdir is required"
[ -x "$bin" ] || die "$bin is not an executable file (build it first: cargo build --release --locked)"

# Files land with these modes whatever the umask or the checkout's modes.
inst() { install -D -m "$1" "$2" "$destdir$3"; }

inst 0755 "$bin" /usr/bin/gsyncd
inst 0644 "$src/units/gsyncd@.service" "$unitdir/gsyncd@.service"
inst 0644 "$src/units/tmpfiles.d/gsyncd.conf" /usr/lib/tmpfiles.d/gsyncd.conf
inst 0644 "$src/packaging/completion/gsyncd.bash" /usr/share/bash-completion/completions/gsyncd
inst 0644 "$src/packaging/example-session.toml" /usr/share/doc/gsyncd/examples/example-session.toml

# Every page in man/, by the section its name ends in (gsyncd.8, gsyncd.toml.5).
pages=0
for page in "$src"/man/*.[1-9]; do
    [ -f "$page" ] || continue
    name=$(basename "$page")
    section=${name##*.}
    inst 0644 "$page" "/usr/share/man/man$section/$name"
    if $gzip_man; then
        gzip -9 -n -f "$destdir/usr/share/man/man$section/$name"
    fi
    pages=$((pages + 1))
done
[ "$pages" -gt 0 ] || die "no man pages found in $src/man"

# Session files live here; the directory is the package's, the files in it the
# administrator's (see gsyncd.toml(5)).
install -d -m 0755 "$destdir/etc/gsyncd"

echo "install.sh: installed gsyncd, its unit, tmpfiles entry, $pages man pages, bash completion and example session under $destdir"
