/*
 * The merged filesystem tree an index is built from: every layer applied in order with OCI
 * semantics (whiteouts, opaque directories, replacement across types, hardlinks). Private
 * to the indexer. Not thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct idx_tree;

struct idx_xattr_kv {
	char *name;
	uint8_t *value;
	uint32_t len;
};

/* One inode; several nodes share it when hardlinked. */
struct idx_tnode_inode {
	uint32_t mode, uid, gid;
	uint32_t rdev_major, rdev_minor;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint64_t size;
	char *link;		  /* symlink target */
	uint32_t *slots;	  /* regular files: chunk slot ids, in file order */
	uint32_t nslots, slots_cap;
	struct idx_xattr_kv *xattrs;
	uint32_t nxattrs;
	uint32_t refs;		  /* names pointing here */
	uint32_t out_ino;	  /* assigned by the writer */
	uint32_t prefetch_rank;	  /* 0 = not in the startup list; else 1-based order */
};

struct idx_tnode {
	char *name;
	uint32_t name_len;
	struct idx_tnode *parent;
	struct idx_tnode **children; /* directories; unordered until idx_tree_sort */
	uint32_t nchildren, children_cap;
	uint32_t pos;		     /* index in parent->children */
	uint32_t layer;		     /* layer that last wrote this entry (1-based) */
	uint32_t desc_layer;	     /* newest layer that wrote anything below */
	struct idx_tnode_inode *ino;
};

/* Attributes of an entry read from a layer. */
struct idx_entry_attr {
	uint32_t mode; /* with S_IFMT */
	uint32_t uid, gid;
	uint32_t rdev_major, rdev_minor;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	const char *link; /* symlink target */
	struct idx_xattr_kv *xattrs;
	uint32_t nxattrs;
};

int idx_tree_new(struct idx_tree **ret);
void idx_tree_free(struct idx_tree *t);
struct idx_tnode *idx_tree_root(struct idx_tree *t);

/* Start applying layer `layer` (1-based, increasing). */
void idx_tree_begin_layer(struct idx_tree *t, uint32_t layer);

/*
 * Apply one tar entry. `path` is the raw tar name. For regular files, *ret_inode receives
 * the new inode so the caller can attach chunk slots and size. Whiteout entries (.wh.*) are
 * handled here. Returns -EPROTO for hostile or invalid entries (the message names the
 * entry; the caller adds the layer), -ELOOP for symlink loops in parent components.
 * *ret_inode is NULL when nothing needs data (whiteouts, directories, links...).
 */
int idx_tree_apply(struct idx_tree *t, const char *path, const struct idx_entry_attr *a,
		   struct idx_tnode_inode **ret_inode);
/* Apply a hardlink entry `path` -> existing `target`. */
int idx_tree_link(struct idx_tree *t, const char *path, const char *target);

/* Resolve a path in the finished tree, following symlinks (bounded). NULL if absent. */
struct idx_tnode *idx_tree_resolve(struct idx_tree *t, const char *path, bool follow_last);

/* Sort every directory's children by name (memcmp order) for deterministic output. */
void idx_tree_sort(struct idx_tree *t);

/* Path normalisation for tar names: strips "./" and leading "/", collapses "//".
 * -EPROTO for ".." components or empty results. Output buffer PATH_MAX. */
int idx_path_normalize(const char *in, char *out, size_t outlen);
