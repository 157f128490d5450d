#!/usr/bin/env bash
# Installs what the tests need, then runs format check, clippy and every test
# (unit tests, CLI tests, and the real-cluster tests against glusterd, FUSE
# mounts and a private sshd on 127.0.0.1). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

start=$SECONDS
require_root
install_deps

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
# Test binaries run one after another; each real-cluster binary shares one
# cluster fixture among its tests and removes it at the end. tests/install.rs
# builds the .deb and .rpm and installs the .deb in a Debian 12 root booted
# with systemd-nspawn (made once with debootstrap, cached under
# /var/cache/gsyncd-tests).
cargo test --locked --all-targets
echo "== all tests passed in $((SECONDS - start)) s"
