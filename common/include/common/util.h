/* Small utilities shared by every module. All return -errno on failure. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cm_buf;

/* mkdir -p relative to `dirfd` (AT_FDCWD allowed). Existing directories are fine. */
int cm_mkdir_p(int dirfd, const char *path, mode_t mode);

/*
 * Atomically publish `len` bytes as `dirfd/name`: write a unique temporary file in the
 * same directory, optionally fsync it, rename over `name`. Readers see the old file,
 * the new file, or none, never a partial one. Thread- and process-safe.
 */
int cm_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 bool durable);

/* Read a whole file into `buf` (appending). -EFBIG when larger than the buffer's cap. */
int cm_read_file(int dirfd, const char *path, struct cm_buf *buf);

/* Read/write exactly `len` bytes, retrying on EINTR and short transfers. -EIO on early EOF. */
int cm_read_full(int fd, void *buf, size_t len);
int cm_write_full(int fd, const void *buf, size_t len);
/* pwritev(2) at `off` until all of iov[0..n) is written (retries EINTR and short writes;
 * iov is consumed). -errno. */
struct iovec;
int cm_pwritev_full(int fd, struct iovec *iov, int n, uint64_t off);
int cm_pread_full(int fd, void *buf, size_t len, off_t off);

/* Remove a directory tree below `dirfd/name` without following symlinks. */
/* opendir(3) of `path` relative to `dirfd` (O_CLOEXEC, plus `flags`: O_NOFOLLOW...), the fd
 * owned by the DIR. NULL with errno set on failure. */
DIR *cm_opendirat(int dirfd, const char *path, int flags);
int cm_rm_rf_at(int dirfd, const char *name);

/* The state root: $ISORUN_ROOT or /var/lib/isorun. Never NULL; the string is static/env. */
const char *cm_root_default(void);

/* Monotonic clock in nanoseconds. */
uint64_t cm_now_ns(void);

/* "1.5 MiB" style. `out` holds at least 32 bytes. */
void cm_format_bytes(uint64_t n, char *out, size_t outlen);

/* Parse "64K", "1M", "2G", "123" (binary units) into bytes. -EINVAL if malformed. */
int cm_parse_size(const char *s, uint64_t *ret);

/* Parse a decimal number from min to max (digits only: no sign, space or suffix).
 * -EINVAL if malformed, -ERANGE outside [min, max]; *ret is untouched on error. */
int cm_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);

/* asprintf that returns NULL on failure instead of leaving the pointer undefined. */
char *cm_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool cm_str_has_prefix(const char *s, const char *prefix);

/* Standard base64 (RFC 4648 section 4, padded). Encoding writes 4*ceil(len/3) characters and a
 * NUL into `out`, which holds CM_BASE64_LEN(len) bytes. */
#define CM_BASE64_LEN(n) (4 * (((n) + 2) / 3) + 1)
void cm_base64_encode(const void *data, size_t len, char *out);
/* Decodes `len` characters (a multiple of 4, padding only at the end) into `out`, which holds
 * len / 4 * 3 bytes; returns the decoded length, or -EPROTO for anything else. */
ssize_t cm_base64_decode(const char *in, size_t len, uint8_t *out);
