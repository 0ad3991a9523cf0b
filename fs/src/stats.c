/* Read latency histogram: log2 buckets, each split in four linear sub-buckets, so a
 * quantile is known within 25 % without locks or allocation on the read path. */
#include "fs_int.h"

#include <stdatomic.h>

static unsigned bucket_of(uint64_t us)
{
	if (us < 4)
		return (unsigned)us;
	unsigned lg = 63u - (unsigned)__builtin_clzll(us); /* >= 2 */
	unsigned sub = (unsigned)((us >> (lg - 2)) & 3u);
	unsigned b = lg * 4u + sub;
	return b < FS_HIST_BUCKETS ? b : FS_HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned b)
{
	if (b < 4)
		return b;
	unsigned lg = b / 4u, sub = b % 4u;
	return ((4ull + sub + 1ull) << (lg - 2)) - 1ull;
}

void fs_hist_add(struct fs_hist *h, uint64_t us)
{
	__atomic_add_fetch(&h->b[bucket_of(us)], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
	uint64_t m = __atomic_load_n(&h->max_us, __ATOMIC_RELAXED);
	while (us > m && !__atomic_compare_exchange_n(&h->max_us, &m, us, true, __ATOMIC_RELAXED,
						      __ATOMIC_RELAXED))
		;
}

uint64_t fs_hist_quantile(const struct fs_hist *h, double q)
{
	uint64_t n = 0, b[FS_HIST_BUCKETS];
	for (unsigned i = 0; i < FS_HIST_BUCKETS; i++) {
		b[i] = __atomic_load_n(&h->b[i], __ATOMIC_RELAXED);
		n += b[i];
	}
	if (n == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)n);
	if (want >= n)
		want = n - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < FS_HIST_BUCKETS; i++) {
		seen += b[i];
		if (seen > want) {
			/* The last bucket also holds everything above its range. */
			uint64_t m = __atomic_load_n(&h->max_us, __ATOMIC_RELAXED);
			uint64_t u = i == FS_HIST_BUCKETS - 1 ? m : bucket_upper(i);
			return u < m ? u : m;
		}
	}
	return __atomic_load_n(&h->max_us, __ATOMIC_RELAXED);
}
