/* The store's insides, shared by store.c and store_packs.c. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/uio.h>

struct pack_fd {
	uint32_t id;
	int fd;
	bool writable;
};

struct idx_store {
	char *root;
	int root_fd;
	pthread_mutex_t lock;
	sqlite3 *db; /* guarded by lock */
	pthread_mutex_t fd_lock;
	struct pack_fd *fds; /* open local packs, guarded by fd_lock */
	size_t nfds, fds_alloc;
};

/* Tables of the local packs (indexer/store.h), part of store.db's schema. */
#define STORE_PACKS_SCHEMA                                                                     \
	"CREATE TABLE IF NOT EXISTS local_packs(id INTEGER PRIMARY KEY AUTOINCREMENT,"         \
	" created INTEGER NOT NULL);"                                                          \
	"CREATE TABLE IF NOT EXISTS local_chunks(digest BLOB PRIMARY KEY, pack INTEGER NOT NULL," \
	" off INTEGER NOT NULL, len INTEGER NOT NULL, sum INTEGER NOT NULL) WITHOUT ROWID;"     \
	"CREATE INDEX IF NOT EXISTS local_chunks_pack ON local_chunks(pack, off);"

void store_packs_fini(struct idx_store *s);

/* Log "store.db: WHAT: <sqlite's message>" and map `rc` to an errno (-EIO by default). */
int store_db_err(sqlite3 *db, int rc, const char *what);
static inline int store_db_fail(sqlite3 *db, const char *what)
{
	return store_db_err(db, sqlite3_errcode(db), what);
}

/* Raw frames (indexer/store.h) of up to 8 blocks (1 MiB) as iovecs. */
#define RAW_IOV_MAXB 8u
#define RAW_IOV_HDR  (9 + 3 * RAW_IOV_MAXB)
#define RAW_IOV_MAX  (1 + 2 * RAW_IOV_MAXB)
struct iovec;
int store_raw_iov(const void *data, uint32_t usize, uint8_t hdr[RAW_IOV_HDR],
		  struct iovec iov[RAW_IOV_MAX]);
