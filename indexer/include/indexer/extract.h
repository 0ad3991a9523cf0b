/*
 * Materialising and verifying an index against the local store.
 */
#pragma once

#include <stdint.h>

struct idx_reader;
struct idx_store;

/*
 * Write the image tree into `dir` (created if missing; must be empty): directories, files
 * (content from the store, each chunk verified), symlinks, hardlinks, device nodes, FIFOs,
 * owners, modes (setuid/setgid/sticky), xattrs and nanosecond mtimes, like `umoci unpack`'s
 * rootfs. Every operation is relative to directory fds (*at calls), never following a
 * symlink of the image. -ENOENT/-EBADMSG for a missing/corrupt chunk, -ENOTEMPTY.
 * Owners, devices and trusted./security. xattrs need root.
 */
int idx_extract(const struct idx_reader *r, struct idx_store *s, const char *dir);

struct idx_verify_result {
	uint32_t chunks, missing, corrupt;
};
/* Check every chunk of the index: present in the store and matching its digest.
 * Returns 0 if all are good, -ENOENT if some are missing, -EBADMSG if some are corrupt
 * (corrupt files are removed from the store). */
int idx_verify(const struct idx_reader *r, struct idx_store *s, struct idx_verify_result *ret);
