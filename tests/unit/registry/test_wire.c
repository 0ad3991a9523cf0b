/* Content-Range, Range header and multipart/byteranges parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry/client.h"
#include "registry/wire.h"

static void test_content_range(void **state)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t a, b, t;
	} cases[] = {
	    {"bytes 0-9/100", 0, 0, 9, 100},
	    {"  bytes 5-5/*", 0, 5, 5, UINT64_MAX},
	    {"bytes 0-18446744073709551614/18446744073709551615", 0, 0, 18446744073709551614ull,
	     18446744073709551615ull},
	    {"bytes 9-0/100", -EPROTO, 0, 0, 0},
	    {"bytes 0-100/100", -EPROTO, 0, 0, 0}, /* last must be < total */
	    {"bytes 0-9", -EPROTO, 0, 0, 0},
	    {"bytes -9/100", -EPROTO, 0, 0, 0},
	    {"items 0-9/100", -EPROTO, 0, 0, 0},
	    {"bytes 0-99999999999999999999/1", -EPROTO, 0, 0, 0},
	    {"bytes 0-9/100x", -EPROTO, 0, 0, 0},
	    {"", -EPROTO, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t a = 1, b = 1, t = 1;
		int rc = reg_content_range_parse(cases[i].s, strlen(cases[i].s), &a, &b, &t);
		if (rc != cases[i].rc)
			fail_msg("'%s': %d", cases[i].s, rc);
		if (rc == 0) {
			assert_int_equal(a, cases[i].a);
			assert_int_equal(b, cases[i].b);
			assert_true(t == cases[i].t);
		}
	}
}

static void test_range_header(void **state)
{
	char b1[4], b2[4], out[64];
	struct reg_range r[2] = {{.off = 0, .len = 10, .buf = b1},
				 {.off = 100, .len = 1, .buf = b2}};
	assert_int_equal(reg_range_header(r, 2, out, sizeof(out)), 0);
	assert_string_equal(out, "bytes=0-9,100-100");
	assert_int_equal(reg_range_header(r, 2, out, 10), -ENOBUFS);
	r[1].len = 0;
	assert_int_equal(reg_range_header(r, 2, out, sizeof(out)), -EINVAL);
	assert_int_equal(reg_range_header(r, 0, out, sizeof(out)), -EINVAL);
}

static void test_boundary(void **state)
{
	char b[71];
	assert_int_equal(reg_multipart_boundary("multipart/byteranges; boundary=3d6b6a416f9b5", b),
			 0);
	assert_string_equal(b, "3d6b6a416f9b5");
	assert_int_equal(reg_multipart_boundary("multipart/byteranges; boundary=\"a b;c\"; x=y", b),
			 0);
	assert_string_equal(b, "a b;c");
	assert_int_equal(reg_multipart_boundary("multipart/mixed; boundary=x", b), -EPROTO);
	assert_int_equal(reg_multipart_boundary("multipart/byteranges", b), -EPROTO);
	assert_int_equal(reg_multipart_boundary("multipart/byteranges; boundary=\"open", b),
			 -EPROTO);
	char longb[200];
	snprintf(longb, sizeof(longb), "multipart/byteranges; boundary=%071d", 0);
	assert_int_equal(reg_multipart_boundary(longb, b), -EPROTO);
}

/* The blob is bytes i % 251; ranges are checked against it. */
static uint8_t blob_byte(uint64_t i)
{
	return (uint8_t)(i % 251);
}

static size_t part(char *out, const char *boundary, uint64_t a, uint64_t b, uint64_t total)
{
	size_t n = (size_t)sprintf(out,
				   "\r\n--%s\r\nContent-Type: application/octet-stream\r\n"
				   "Content-Range: bytes %llu-%llu/%llu\r\n\r\n",
				   boundary, (unsigned long long)a, (unsigned long long)b,
				   (unsigned long long)total);
	for (uint64_t i = a; i <= b; i++)
		out[n++] = (char)blob_byte(i);
	return n;
}

static void test_multipart(void **state)
{
	static char body[65536];
	size_t n = 0;
	const char *bd = "XyZ";
	/* parts out of order; one part merges two requested ranges; a part whose data contains
	 * the boundary text is handled by Content-Range lengths */
	n += part(body + n, bd, 300, 309, 1000);
	n += part(body + n, bd, 0, 49, 1000); /* covers ranges [0,10) and [40,50) */
	n += (size_t)sprintf(body + n, "\r\n--%s--\r\n", bd);
	uint8_t r0[10], r1[10], r2[10];
	struct reg_range rg[3] = {{.off = 0, .len = 10, .buf = r0}, {.off = 40, .len = 10, .buf = r1}, {.off = 300, .len = 10, .buf = r2}};
	uint64_t filled[3] = {0};
	assert_int_equal(reg_multipart_parse(bd, (uint8_t *)body, n, rg, 3, filled), 0);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(filled[k], 10);
		for (uint64_t i = 0; i < 10; i++)
			assert_int_equal(((uint8_t *)rg[k].buf)[i], blob_byte(rg[k].off + i));
	}
	/* truncated: a part running past the end */
	uint64_t f2[3] = {0};
	assert_int_equal(reg_multipart_parse(bd, (uint8_t *)body, n - 40, rg, 3, f2), -EPROTO);
	/* missing Content-Range */
	const char noc[] = "--b\r\nContent-Type: x\r\n\r\nabc\r\n--b--";
	assert_int_equal(reg_multipart_parse("b", (const uint8_t *)noc, strlen(noc), rg, 3, f2),
			 -EPROTO);
	/* wrong delimiter after a part */
	const char bad[] = "--b\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--c--";
	assert_int_equal(reg_multipart_parse("b", (const uint8_t *)bad, strlen(bad), rg, 3, f2),
			 -EPROTO);
	/* no parts at all */
	assert_int_equal(reg_multipart_parse("b", (const uint8_t *)"--b--", 5, rg, 3, f2), -EPROTO);
	/* boundary text inside the data */
	char b3[256];
	size_t m =
	    (size_t)sprintf(b3, "--b\r\nContent-Range: bytes 0-9/10\r\n\r\n\r\n--b--xyz\r\n--b--");
	uint8_t d[10];
	struct reg_range one = {.off = 0, .len = 10, .buf = d};
	uint64_t f3 = 0;
	assert_int_equal(reg_multipart_parse("b", (uint8_t *)b3, m, &one, 1, &f3), 0);
	assert_int_equal(f3, 10);
	assert_memory_equal(d, "\r\n--b--xyz", 10);
}

static void test_ranges_copy(void **state)
{
	uint8_t a[4], b[4];
	struct reg_range rg[2] = {{.off = 2, .len = 4, .buf = a}, {.off = 8, .len = 4, .buf = b}};
	uint64_t filled[2] = {0};
	uint8_t seg[16];
	for (int i = 0; i < 16; i++)
		seg[i] = (uint8_t)i;
	/* a stream delivered in pieces, one piece straddling both ranges' edges */
	reg_ranges_copy(rg, 2, filled, 0, seg, 3);
	reg_ranges_copy(rg, 2, filled, 3, seg + 3, 7);
	reg_ranges_copy(rg, 2, filled, 10, seg + 10, 6);
	assert_int_equal(filled[0], 4);
	assert_int_equal(filled[1], 4);
	assert_memory_equal(a, "\x02\x03\x04\x05", 4);
	assert_memory_equal(b, "\x08\x09\x0a\x0b", 4);
}

static void test_err_translation(void **state)
{
	assert_int_equal(reg_err_from_http(200), 0);
	assert_int_equal(reg_err_from_http(206), 0);
	assert_int_equal(reg_err_from_http(404), -ENOENT);
	assert_int_equal(reg_err_from_http(401), -EACCES);
	assert_int_equal(reg_err_from_http(403), -EACCES);
	assert_int_equal(reg_err_from_http(429), -EAGAIN);
	assert_int_equal(reg_err_from_http(503), -EAGAIN);
	assert_int_equal(reg_err_from_http(413), -EFBIG);
	assert_int_equal(reg_err_from_http(400), -EPROTO);
	assert_int_equal(reg_err_from_http(501), -EIO);
	assert_int_equal(reg_err_from_curl(0), 0);
	assert_int_equal(reg_err_from_curl(7 /* COULDNT_CONNECT */), -EAGAIN);
	assert_int_equal(reg_err_from_curl(18 /* PARTIAL_FILE */), -EAGAIN);
	assert_int_equal(reg_err_from_curl(28 /* OPERATION_TIMEDOUT */), -ETIMEDOUT);
	assert_int_equal(reg_err_from_curl(60 /* PEER_FAILED_VERIFICATION */), -EACCES);
	/* in words for a user: every -errno the client documents has its own */
	assert_string_equal(reg_strerror(-ENOENT), "not found in the registry");
	static const int documented[] = {-ENOENT, -EACCES,    -EAGAIN, -EBADMSG,
					 -EPROTO, -ETIMEDOUT, -ENOTSUP};
	for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
		assert_string_not_equal(reg_strerror(documented[i]), strerror(-documented[i]));
	assert_string_equal(reg_strerror(-ENOMEM), strerror(ENOMEM));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_range), cmocka_unit_test(test_range_header),
	    cmocka_unit_test(test_boundary),	  cmocka_unit_test(test_multipart),
	    cmocka_unit_test(test_ranges_copy),	  cmocka_unit_test(test_err_translation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
