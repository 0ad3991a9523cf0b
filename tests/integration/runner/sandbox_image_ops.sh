#!/bin/bash
# The lower-dir reference hook through the runner library (image_ops.c) on real sandboxes.
. "$(dirname "$0")/lib.sh"
make_rootfs "$WORK/rootfs"
"$ISORUN_BUILD_DIR/tests/integration/runner-image-ops" "$WORK/rootfs"
