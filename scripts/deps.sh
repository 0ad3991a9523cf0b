#!/bin/sh
# Installs every Debian package isorun needs to build, test and demo (Debian 12, as root).
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
 libfuse3-dev fuse3 libcurl4-openssl-dev libzstd-dev libxxhash-dev libssl-dev
 libsqlite3-dev libcmocka-dev libarchive-dev libjson-c-dev libseccomp-dev zlib1g-dev libisal-dev
 musl-tools docker-registry skopeo umoci debootstrap busybox-static kmod cpio
 iproute2 hyperfine apache2-utils attr zstd python3 gnuplot-nox fio ca-certificates
 jq curl strace util-linux"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing </dev/null
fi
