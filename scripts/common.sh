# Shared by scripts/test.sh and scripts/demo.sh. Source it; do not run it.

# Packages gsyncd's tests and demo need on a Debian 12 machine.
GSYNCD_PACKAGES=(glusterfs-server glusterfs-client rsync openssh-server openssh-client attr groff-base man-db python3 iproute2 util-linux passwd tar)
# Installed without recommends (they would pull in a whole systemd setup).
# debootstrap and the packaging tools are for tests/install.rs, which builds
# the .deb and .rpm and installs the .deb in a booted Debian root.
GSYNCD_PACKAGES_NORECOMMENDS=(systemd systemd-container debootstrap dpkg-dev debhelper fakeroot lintian rpm rpmlint)

die() { echo "error: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root: glusterd, FUSE mounts and sshd need it"
}

# Installs what is missing, with apt-get (after apt-get update).
install_deps() {
    local missing=() p
    for p in "${GSYNCD_PACKAGES[@]}" "${GSYNCD_PACKAGES_NORECOMMENDS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${GSYNCD_PACKAGES[@]}" >/dev/null
        apt-get install -y -qq --no-install-recommends "${GSYNCD_PACKAGES_NORECOMMENDS[@]}" >/dev/null
    fi
    command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup)"
    [ -e /dev/fuse ] || die "/dev/fuse is missing: GlusterFS mounts need FUSE"
}

# Installs those of the named packages that are missing (without recommends).
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root, or apt-get install them)"
    echo "== installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
