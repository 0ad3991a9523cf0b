#!/bin/bash
# Sandboxes on a real lazily-fetched image: an OCI image built here with umoci, indexed by
# `isorun pull`, mounted by `isorun mount` (FUSE) and used as the overlay's lower dir.
# Skipped when the build has no fs module (no mount verb) or no /dev/fuse.
. "$(dirname "$0")/lib.sh"

"$ISORUN" --help 2>&1 | grep -q "^  mount " || skip "this build has no 'isorun mount' (fs module)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v umoci >/dev/null || skip "umoci not installed"

make_rootfs "$WORK/rootfs"
umoci init --layout "$WORK/oci" >/dev/null
umoci new --image "$WORK/oci:bb" >/dev/null
umoci unpack --rootless --image "$WORK/oci:bb" "$WORK/bundle" >/dev/null 2>&1 ||
	umoci unpack --image "$WORK/oci:bb" "$WORK/bundle" >/dev/null
cp -a "$WORK/rootfs/." "$WORK/bundle/rootfs/"
umoci repack --image "$WORK/oci:bb" "$WORK/bundle" >/dev/null
"$ISORUN" pull "oci:$WORK/oci:bb" >/dev/null
MNT="$WORK/mnt"
mkdir -p "$MNT"
"$ISORUN" mount "oci:$WORK/oci:bb" "$MNT"
trap '"$ISORUN" umount --lazy "$MNT" >/dev/null 2>&1 || true; cleanup' EXIT
grep -q " $MNT fuse" /proc/self/mounts || fail "no FUSE mount on $MNT"
ok "image mounted lazily"

ID=$("$ISORUN" create --rootfs "$MNT")
expect_eq "a command from the lazy image" "$("$ISORUN" exec "$ID" -- busybox echo lazy)" lazy
expect_rc "copy-up of an image file over FUSE" 0 "$ISORUN" exec "$ID" -- sh -c 'echo more >> /etc/passwd'
expect_eq "the write is in the scratch" "$(tail -n1 "$ISORUN_ROOT/sandboxes/$ID/scratch/upper/etc/passwd")" more
expect_eq "the image is unchanged" "$(grep -c more "$MNT/etc/passwd" || true)" 0
"$ISORUN" rm -f "$ID"

# --userns on a lower that cannot be idmapped: boots, image files read-only to it
UID_=$("$ISORUN" create --userns --rootfs "$MNT" 2>"$WORK/userns.err")
grep -q "cannot be idmapped" "$WORK/userns.err" && ok "warned that the lower cannot be idmapped"
expect_eq "userns sandbox on FUSE runs" "$("$ISORUN" exec "$UID_" -- sh -c 'echo ok > /sandbox/f && cat /sandbox/f')" ok
"$ISORUN" rm -f "$UID_"
echo "all FUSE-lower checks passed"
