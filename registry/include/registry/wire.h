/*
 * HTTP wire-format helpers of the registry client that are pure functions over memory
 * (exposed for the unit tests, the fuzz targets and any module that talks HTTP itself).
 * Thread-safe; nothing is allocated.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct reg_range;

/*
 * Parse a Content-Range value "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"). *ret_total is
 * UINT64_MAX for "*". -EPROTO if malformed or LAST < FIRST.
 */
int reg_content_range_parse(const char *s, size_t len, uint64_t *ret_first, uint64_t *ret_last,
			    uint64_t *ret_total);

/*
 * The boundary parameter of a "multipart/byteranges; boundary=..." Content-Type (quoted
 * or not) copied to `out` (at most 70 characters per RFC 2046, so 71 bytes suffice).
 * -EPROTO if it is not multipart/byteranges or has no valid boundary.
 */
int reg_multipart_boundary(const char *content_type, char out[71]);

/*
 * Copy the parts of a multipart/byteranges body into the ranges they cover. Each part's
 * length comes from its own Content-Range, so binary data that happens to contain the
 * boundary is handled. Parts may come in any order and cover several ranges or part of
 * one; bytes outside every range are skipped. `filled[i]` (caller zeroes it) accumulates
 * the bytes copied into range i; overlapping parts are not double-counted only if they do
 * not overlap, so callers must check filled[i] >= ranges[i].len.
 * -EPROTO (malformed, a part running past the body), 0 otherwise.
 */
int reg_multipart_parse(const char *boundary, const uint8_t *body, size_t len,
			struct reg_range *ranges, size_t n, uint64_t *filled);

/*
 * Copy the bytes of a blob stream segment [pos, pos + len) into every range it overlaps,
 * adding to filled[i]. Used for 206 single-part and 200 whole-blob answers.
 */
void reg_ranges_copy(struct reg_range *ranges, size_t n, uint64_t *filled, uint64_t pos,
		     const uint8_t *data, size_t len);

/*
 * Format a Range header value "bytes=a-b,c-d" into `out`. -EINVAL (empty range or
 * n == 0), -ENOBUFS if it does not fit.
 */
int reg_range_header(const struct reg_range *ranges, size_t n, char *out, size_t outlen);
