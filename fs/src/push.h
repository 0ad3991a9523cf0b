/*
 * The page-cache pusher of one mount: the startup list's file pages written into the
 * kernel's page cache (FUSE_NOTIFY_STORE) as their chunks arrive, so that a starting
 * program's reads and page faults find them there instead of each waiting for a FUSE read
 * round trip. The kernel accepts pages only for an inode it has (a file looked up since
 * the mount): pages of a file not looked up yet wait for its lookup (fs_push_known).
 * Only whole pages are pushed (a page across two chunks once both are here; a file's last
 * page up to its end); the pages of chunks outside the list are left to reads.
 */
#pragma once

#include <stdint.h>

struct fs_engine;
struct idx_reader;
struct json_object;
struct fs_push;

/*
 * A pusher writing to FUSE device `fd` (the session's) for the index `r` served by `e`
 * (both borrowed; they outlive it). Starts its thread. An index without a startup list
 * gets none: *ret = NULL and 0. -ENOMEM, -errno from pthread_create.
 */
int fs_push_start(struct fs_engine *e, const struct idx_reader *r, int fd, struct fs_push **ret);
/* Stop the thread and free. NULL is a no-op. */
void fs_push_free(struct fs_push *p);
/* The kernel has inode `ino` now (a lookup or a readdirplus entry was answered): its
 * waiting pages can go. Cheap when already known; NULL p is a no-op. */
void fs_push_known(struct fs_push *p, uint32_t ino);
/* Counters into a stats object (docs: fs/README.md). */
void fs_push_stats(struct fs_push *p, struct json_object *j);
