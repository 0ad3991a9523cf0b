#!/bin/bash
# Indexer end to end against umoci, on a real multi-layer image built here:
#   layer 1  debootstrap --variant=minbase bookworm (cached in tests/work/indexer/)
#   layer 2  adds files: hardlinks (also to a lower-layer file), setuid/setgid, a sticky dir,
#            security.capability and user xattrs, a FIFO, char and block devices, symlinks,
#            owners, a nanosecond mtime, a multi-chunk random file
#   layer 3  deletes (umoci writes the whiteouts) and replaces (file -> dir, dir -> symlink)
#   layer 4  a hand-made tar added with `umoci raw add-layer`: an opaque directory, and a
#            whiteout plus a new file of the same name
# The image is indexed with isorun-index, extracted, and compared path by path (type, mode,
# owner, size, mtime ns, link target, xattrs, content hash, hardlink groups) with
# `umoci unpack` of the same image: they must be identical. Also: the same image indexed
# into two stores gives the same index digest; `verify` passes, and fails once a chunk file
# is corrupted.
#
# usage: test_umoci.sh PATH/TO/isorun-index      (exit 77 = skipped, with the reason)
set -euo pipefail

TOOL=$1
SRC=${ISORUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$SRC/tests/work/indexer
SUITE=bookworm

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (device nodes, owners, security.* xattrs, debootstrap)"
for c in debootstrap umoci python3 setfattr setcap curl mknod; do
	command -v "$c" >/dev/null 2>&1 || skip "missing command $c (scripts/deps.sh)"
done

# The Debian mirror apt uses here (deb822 .sources or one-line .list).
mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
	[ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
	echo "${m:-http://deb.debian.org/debian}"
}

mkdir -p "$CACHE"
if [ ! -e "$CACHE/rootfs.ok" ]; then
	M=$(mirror)
	curl -fsS -o /dev/null --max-time 15 "$M/dists/$SUITE/Release" ||
		skip "Debian mirror $M unreachable: cannot debootstrap the base layer"
	step "debootstrap --variant=minbase $SUITE from $M (cached in $CACHE)"
	rm -rf "$CACHE/rootfs.tmp" "$CACHE/rootfs"
	debootstrap --variant=minbase "$SUITE" "$CACHE/rootfs.tmp" "$M" >"$CACHE/debootstrap.log" 2>&1 ||
		fail "debootstrap failed, see $CACHE/debootstrap.log"
	mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
	touch "$CACHE/rootfs.ok"
fi

W=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -rf "$W"' EXIT
IMG="$W/oci:img"

step "layer 1: the debootstrap rootfs"
umoci init --layout "$W/oci"
umoci new --image "$IMG"
umoci config --image "$IMG" --config.cmd /bin/sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
umoci unpack --image "$IMG" "$W/b"
cp -a "$CACHE/rootfs/." "$W/b/rootfs/"
umoci repack --image "$IMG" "$W/b"
rm -rf "$W/b"

step "layer 2: additions"
umoci unpack --image "$IMG" "$W/b"
R=$W/b/rootfs
mkdir -p "$R/opt/l2" "$R/opt/opq" "$R/opt/d2s"
echo "first name" >"$R/opt/l2/file"
ln "$R/opt/l2/file" "$R/opt/l2/hardlink"
ln "$R/usr/bin/dash" "$R/opt/l2/dash-hardlink" # a new name for a lower layer's file
printf '#!/bin/sh\n' >"$R/opt/l2/setuid" && chmod 4755 "$R/opt/l2/setuid"
printf 'x\n' >"$R/opt/l2/setgid" && chmod 2711 "$R/opt/l2/setgid" && chgrp 50 "$R/opt/l2/setgid"
mkdir -m 1777 "$R/opt/l2/sticky"
cp "$R/usr/bin/dash" "$R/opt/l2/ping" && setcap cap_net_raw+ep "$R/opt/l2/ping"
setfattr -n user.isorun.test -v "hello world" "$R/opt/l2/file"
mkfifo -m 0620 "$R/opt/l2/fifo"
mknod -m 0666 "$R/opt/l2/null" c 1 3
mknod -m 0660 "$R/opt/l2/loop9" b 7 9
ln -s ../../usr/bin "$R/opt/l2/bin"
ln -s /nonexistent/target "$R/opt/l2/dangling"
printf 'owned\n' >"$R/opt/l2/owned" && chown 1234:5678 "$R/opt/l2/owned"
touch -d "2020-01-02 03:04:05.123456789" "$R/opt/l2/owned"
head -c 3000000 /dev/urandom >"$R/opt/l2/random"
echo a >"$R/opt/opq/a" && echo b >"$R/opt/opq/b" && mkdir "$R/opt/opq/sub" && echo c >"$R/opt/opq/sub/c"
echo x >"$R/opt/d2s/x"
echo f >"$R/opt/f2d"
echo same >"$R/opt/wh-and-new"
umoci repack --image "$IMG" "$W/b"
rm -rf "$W/b"

step "layer 3: deletions and replacements"
umoci unpack --image "$IMG" "$W/b"
R=$W/b/rootfs
rm "$R/opt/l2/file"                      # the hardlink group shrinks to one name
rm -rf "$R/usr/share/doc" "$R/usr/share/man"
rm "$R/opt/f2d" && mkdir "$R/opt/f2d" && echo in >"$R/opt/f2d/in"
rm -rf "$R/opt/d2s" && ln -s /opt/l2 "$R/opt/d2s"
echo "changed in layer 3" >>"$R/etc/debian_version"
umoci repack --image "$IMG" "$W/b"
rm -rf "$W/b"

step "layer 4: opaque directory and a whiteout + new file in one layer (raw tar)"
python3 - "$W/layer4.tar" <<'PY'
import io, sys, tarfile
def add(t, name, kind='f', data=b'', mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.mtime, ti.mode = 1700000000, mode
    if kind == 'd':
        ti.type = tarfile.DIRTYPE
        t.addfile(ti)
    else:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    add(t, 'opt/', 'd', mode=0o755)
    add(t, 'opt/opq/', 'd', mode=0o750)
    add(t, 'opt/opq/.wh..wh..opq')
    add(t, 'opt/opq/new', data=b'only this survives\n')
    add(t, 'opt/.wh.wh-and-new')
    add(t, 'opt/wh-and-new', data=b'replaced in the same layer\n')
PY
umoci raw add-layer --image "$IMG" "$W/layer4.tar"

step "index into two stores"
D1=$("$TOOL" --root "$W/store1" build "oci:$IMG" | tail -n 1)
D2=$("$TOOL" --root "$W/store2" build "oci:$IMG" | tail -n 1)
echo "index $D1"
[[ $D1 == sha256:* ]] || fail "no index digest from build: '$D1'"
[ "$D1" = "$D2" ] || fail "same image, two stores, two digests: $D1 vs $D2"

step "extract and compare with umoci unpack"
"$TOOL" --root "$W/store1" extract "$D1" "$W/extracted"
umoci unpack --image "$IMG" "$W/ref" >/dev/null
# The root directory's mtime is the extraction time in umoci's rootfs.
python3 "$HERE/treecmp.py" --ignore-root-mtime "$W/ref/rootfs" "$W/extracted" ||
	fail "isorun-index extract differs from umoci unpack"

# The tree really has what the layers were built to test (the comparison alone would pass
# on an image that lost them in both tools).
E=$W/extracted
[ "$(stat -c %h "$E/opt/l2/hardlink")" = 1 ] || fail "hardlink group after deletion"
[ "$(stat -c %i "$E/opt/l2/dash-hardlink")" = "$(stat -c %i "$E/usr/bin/dash")" ] ||
	fail "hardlink to a lower layer's file"
[ "$(stat -c %a "$E/opt/l2/setuid")" = 4755 ] || fail "setuid bit"
[ "$(stat -c %a "$E/opt/l2/sticky")" = 1777 ] || fail "sticky bit"
getfattr -n security.capability "$E/opt/l2/ping" >/dev/null 2>&1 || fail "security.capability"
[ -p "$E/opt/l2/fifo" ] && [ -c "$E/opt/l2/null" ] && [ -b "$E/opt/l2/loop9" ] || fail "special files"
[ "$(stat -c %y "$E/opt/l2/owned")" = "2020-01-02 03:04:05.123456789 +0000" ] ||
	[ "$(TZ=UTC stat -c %Y.%y "$E/opt/l2/owned" | cut -c1-10)" = "1577934245" ] || fail "ns mtime"
[ ! -e "$E/usr/share/doc" ] || fail "whiteout of usr/share/doc"
[ -d "$E/opt/f2d" ] && [ -L "$E/opt/d2s" ] || fail "file->dir / dir->symlink"
[ "$(ls "$E/opt/opq")" = new ] || fail "opaque directory: $(ls "$E/opt/opq")"
grep -q "replaced in the same layer" "$E/opt/wh-and-new" || fail "whiteout + new file"

step "verify, then corrupt a chunk"
"$TOOL" --root "$W/store1" verify "$D1"
CHUNK=$(find "$W/store1/chunks" -type f -print -quit)
printf '\x00\x01\x02\x03' | dd of="$CHUNK" bs=1 seek=8 conv=notrunc status=none
if "$TOOL" --root "$W/store1" verify "$D1"; then
	fail "verify passed with a corrupted chunk ($CHUNK)"
fi
echo "PASS"
