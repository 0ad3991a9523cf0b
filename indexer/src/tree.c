/*
 * Merged tree with OCI layer semantics (image-spec layer.md, and umoci's unpack as the
 * reference implementation):
 *  - entries replace what a lower layer had at the same path, across types; a directory
 *    entry over an existing directory only updates its metadata (children stay);
 *  - `.wh.NAME` hides NAME of LOWER layers: what this layer wrote at or below NAME stays,
 *    whatever the order of entries in the tar;
 *  - `.wh..wh..opq` in D hides every lower-layer entry below D (same rule);
 *  - hardlinks share an inode; replacing one name later breaks the link (the other name keeps
 *    the old content), as overlayfs copy-up and umoci do;
 *  - parents that a layer does not list are created (0755 root:root, mtime 0) and symlinks in
 *    parent components are followed inside the image root. Following ".." past the root is
 *    rejected as hostile, as are ".." components in names.
 * `layer` stamps (1-based) on nodes record which layer last wrote an entry and (desc_layer)
 * whether anything below a directory was written by the current layer.
 */
#include "tree.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SYMLINK_HOPS 40

struct idx_tree {
	struct idx_tnode *root;
	uint32_t layer;
	/* (parent, name) -> node, open addressing with tombstones */
	struct idx_tnode **slots;
	size_t nslots, used, tombs;
};

#define TOMB ((struct idx_tnode *)1)

static uint64_t child_hash(const struct idx_tnode *parent, const char *name, size_t len)
{
	return cm_xxh3(name, len) ^ ((uintptr_t)parent * 0x9e3779b97f4a7c15ull);
}

static int map_grow(struct idx_tree *t)
{
	size_t n = t->nslots ? t->nslots * 2 : 4096;
	if (t->used * 2 < t->nslots)
		n = t->nslots; /* only tombstones to clear: rehash at the same size */
	struct idx_tnode **s = calloc(n, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < t->nslots; i++) {
		struct idx_tnode *nd = t->slots[i];
		if (!nd || nd == TOMB)
			continue;
		size_t h = child_hash(nd->parent, nd->name, nd->name_len) & (n - 1);
		while (s[h])
			h = (h + 1) & (n - 1);
		s[h] = nd;
	}
	free(t->slots);
	t->slots = s;
	t->nslots = n;
	t->tombs = 0;
	return 0;
}

static struct idx_tnode **map_find(struct idx_tree *t, const struct idx_tnode *parent,
				   const char *name, size_t len)
{
	if (!t->nslots)
		return NULL;
	size_t h = child_hash(parent, name, len) & (t->nslots - 1);
	for (;;) {
		struct idx_tnode *nd = t->slots[h];
		if (!nd)
			return NULL;
		if (nd != TOMB && nd->parent == parent && nd->name_len == len &&
		    !memcmp(nd->name, name, len))
			return &t->slots[h];
		h = (h + 1) & (t->nslots - 1);
	}
}

static int map_add(struct idx_tree *t, struct idx_tnode *nd)
{
	if ((t->used + t->tombs + 1) * 4 >= t->nslots * 3) {
		int r = map_grow(t);
		if (r < 0)
			return r;
	}
	size_t h = child_hash(nd->parent, nd->name, nd->name_len) & (t->nslots - 1);
	while (t->slots[h] && t->slots[h] != TOMB)
		h = (h + 1) & (t->nslots - 1);
	if (t->slots[h] == TOMB)
		t->tombs--;
	t->slots[h] = nd;
	t->used++;
	return 0;
}

static struct idx_tnode *lookup(struct idx_tree *t, struct idx_tnode *dir, const char *name,
				size_t len)
{
	struct idx_tnode **p = map_find(t, dir, name, len);
	return p ? *p : NULL;
}

static void xattrs_free(struct idx_xattr_kv *x, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(x[i].name);
		free(x[i].value);
	}
	free(x);
}

static void inode_unref(struct idx_tnode_inode *in)
{
	if (!in || --in->refs > 0)
		return;
	free(in->link);
	free(in->slots);
	xattrs_free(in->xattrs, in->nxattrs);
	free(in);
}

static int xattrs_copy(const struct idx_entry_attr *a, struct idx_xattr_kv **ret, uint32_t *ret_n)
{
	*ret = NULL;
	*ret_n = 0;
	if (!a->nxattrs)
		return 0;
	struct idx_xattr_kv *x = calloc(a->nxattrs, sizeof(*x));
	if (!x)
		return -ENOMEM;
	for (uint32_t i = 0; i < a->nxattrs; i++) {
		x[i].name = strdup(a->xattrs[i].name);
		x[i].value = malloc(a->xattrs[i].len ? a->xattrs[i].len : 1);
		x[i].len = a->xattrs[i].len;
		if (!x[i].name || !x[i].value) {
			xattrs_free(x, i + 1);
			return -ENOMEM;
		}
		memcpy(x[i].value, a->xattrs[i].value, a->xattrs[i].len);
	}
	*ret = x;
	*ret_n = a->nxattrs;
	return 0;
}

static int inode_set_attr(struct idx_tnode_inode *in, const struct idx_entry_attr *a)
{
	struct idx_xattr_kv *x;
	uint32_t nx;
	int r = xattrs_copy(a, &x, &nx);
	if (r < 0)
		return r;
	xattrs_free(in->xattrs, in->nxattrs);
	in->xattrs = x;
	in->nxattrs = nx;
	in->mode = a->mode;
	in->uid = a->uid;
	in->gid = a->gid;
	in->rdev_major = a->rdev_major;
	in->rdev_minor = a->rdev_minor;
	in->mtime_sec = a->mtime_sec;
	in->mtime_nsec = a->mtime_nsec;
	return 0;
}

static void touch(struct idx_tree *t, struct idx_tnode *nd)
{
	nd->layer = t->layer;
	for (struct idx_tnode *p = nd->parent; p && p->desc_layer != t->layer; p = p->parent)
		p->desc_layer = t->layer;
}

static void node_free_rec(struct idx_tree *t, struct idx_tnode *nd)
{
	for (uint32_t i = 0; i < nd->nchildren; i++)
		node_free_rec(t, nd->children[i]);
	if (nd->parent) {
		struct idx_tnode **p = map_find(t, nd->parent, nd->name, nd->name_len);
		if (p) {
			*p = TOMB;
			t->used--;
			t->tombs++;
		}
	}
	free(nd->children);
	free(nd->name);
	inode_unref(nd->ino);
	free(nd);
}

/* Unlink `nd` from its parent and free the subtree. */
static void node_remove(struct idx_tree *t, struct idx_tnode *nd)
{
	struct idx_tnode *p = nd->parent;
	uint32_t i = nd->pos;
	p->children[i] = p->children[--p->nchildren];
	p->children[i]->pos = i;
	node_free_rec(t, nd);
}

static int node_new(struct idx_tree *t, struct idx_tnode *parent, const char *name, size_t len,
		    struct idx_tnode_inode *ino, struct idx_tnode **ret)
{
	struct idx_tnode *nd = calloc(1, sizeof(*nd));
	if (!nd)
		return -ENOMEM;
	nd->name = strndup(name, len);
	if (!nd->name) {
		free(nd);
		return -ENOMEM;
	}
	nd->name_len = (uint32_t)len;
	nd->parent = parent;
	nd->ino = ino;
	if (parent->nchildren == parent->children_cap) {
		uint32_t n = parent->children_cap ? parent->children_cap * 2 : 8;
		struct idx_tnode **c = realloc(parent->children, n * sizeof(*c));
		if (!c) {
			free(nd->name);
			free(nd);
			return -ENOMEM;
		}
		parent->children = c;
		parent->children_cap = n;
	}
	int r = map_add(t, nd);
	if (r < 0) {
		free(nd->name);
		free(nd);
		return r;
	}
	nd->pos = parent->nchildren;
	parent->children[parent->nchildren++] = nd;
	ino->refs++;
	touch(t, nd);
	*ret = nd;
	return 0;
}

int idx_tree_new(struct idx_tree **ret)
{
	struct idx_tree *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->root = calloc(1, sizeof(*t->root));
	struct idx_tnode_inode *in = calloc(1, sizeof(*in));
	if (!t->root || !in) {
		free(t->root);
		free(in);
		free(t);
		return -ENOMEM;
	}
	in->mode = S_IFDIR | 0755;
	in->refs = 1;
	t->root->ino = in;
	t->root->name = NULL;
	*ret = t;
	return 0;
}

void idx_tree_free(struct idx_tree *t)
{
	if (!t)
		return;
	node_free_rec(t, t->root);
	free(t->slots);
	free(t);
}

struct idx_tnode *idx_tree_root(struct idx_tree *t)
{
	return t->root;
}

void idx_tree_begin_layer(struct idx_tree *t, uint32_t layer)
{
	t->layer = layer;
}

int idx_path_normalize(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 1 && p[0] == '.') {
			p = e;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EPROTO;
		if (len > NAME_MAX)
			return -ENAMETOOLONG;
		if (o + len + 2 > outlen)
			return -ENAMETOOLONG;
		if (o)
			out[o++] = '/';
		memcpy(out + o, p, len);
		o += len;
		p = e;
	}
	out[o] = 0;
	return 0;
}

static int new_implicit_dir(struct idx_tree *t, struct idx_tnode *parent, const char *name,
			    size_t len, struct idx_tnode **ret)
{
	struct idx_tnode_inode *in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->mode = S_IFDIR | 0755;
	int r = node_new(t, parent, name, len, in, ret);
	if (r < 0)
		free(in);
	return r;
}

/*
 * Walk `path` (normalised, relative to the root) component by component starting at the
 * root. Symlinks in parent components are followed (in the image), and in the last one if
 * `follow_last`. With `create`, missing parents are created as implicit directories.
 * On success *ret is the node (NULL if only the last component is missing), *ret_parent
 * the directory that holds (or would hold) it, *ret_base its name inside `path`.
 */
static int walk(struct idx_tree *t, const char *path, bool create, bool follow_last, int *hops,
		struct idx_tnode *start, struct idx_tnode **ret_parent, struct idx_tnode **ret)
{
	struct idx_tnode *cur = start;
	const char *p = path;
	*ret = NULL;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p) {
			*ret_parent = cur->parent ? cur->parent : cur;
			*ret = cur;
			return 0;
		}
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		const char *rest = e;
		while (*rest == '/')
			rest++;
		bool last = *rest == 0;
		struct idx_tnode *nd;
		if (len == 1 && p[0] == '.') {
			nd = cur;
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (!cur->parent)
				return -EXDEV; /* would escape the root */
			nd = cur->parent;
		} else {
			nd = lookup(t, cur, p, len);
		}
		if (last && !follow_last) {
			*ret_parent = cur;
			*ret = nd;
			return 0;
		}
		if (!nd) {
			if (last) {
				*ret_parent = cur;
				return 0;
			}
			if (!create)
				return -ENOENT;
			int r = new_implicit_dir(t, cur, p, len, &nd);
			if (r < 0)
				return r;
		}
		if (S_ISLNK(nd->ino->mode)) {
			if (++*hops > MAX_SYMLINK_HOPS)
				return -ELOOP;
			const char *target = nd->ino->link;
			struct idx_tnode *tp, *tn;
			int r = walk(t, target, create, true, hops, target[0] == '/' ? t->root : cur,
				     &tp, &tn);
			if (r < 0)
				return r;
			if (!tn)
				return -ENOENT;
			nd = tn;
		}
		if (last) {
			*ret_parent = nd->parent ? nd->parent : nd;
			*ret = nd;
			return 0;
		}
		if (!S_ISDIR(nd->ino->mode))
			return -ENOTDIR;
		cur = nd;
		p = rest;
	}
}

/* Hide everything below `dir` that lower layers wrote; keep what this layer wrote. */
static void prune_lower(struct idx_tree *t, struct idx_tnode *dir)
{
	for (uint32_t i = 0; i < dir->nchildren;) {
		struct idx_tnode *c = dir->children[i];
		if (c->layer == t->layer || c->desc_layer == t->layer) {
			if (S_ISDIR(c->ino->mode))
				prune_lower(t, c);
			i++;
		} else {
			node_remove(t, c); /* swaps the last child into i */
		}
	}
}

static void whiteout(struct idx_tree *t, struct idx_tnode *nd)
{
	if (nd->layer == t->layer || nd->desc_layer == t->layer) {
		if (S_ISDIR(nd->ino->mode))
			prune_lower(t, nd);
		return;
	}
	node_remove(t, nd);
}

static int path_error(int r, const char *path)
{
	switch (r) {
	case -EXDEV:
		return cm_log_ret(-EPROTO, "entry '%s' escapes the image root through a symlink", path);
	case -ELOOP:
		return cm_log_ret(-EPROTO, "entry '%s': too many levels of symlinks", path);
	case -ENOTDIR:
		return cm_log_ret(-EPROTO, "entry '%s': a parent is not a directory", path);
	case -ENAMETOOLONG:
		return cm_log_ret(-EPROTO, "entry '%s': name too long", path);
	case -EPROTO:
		return cm_log_ret(-EPROTO, "entry '%s': '..' in path", path);
	default:
		return r;
	}
}

int idx_tree_apply(struct idx_tree *t, const char *rawpath, const struct idx_entry_attr *a,
		   struct idx_tnode_inode **ret_inode)
{
	char path[PATH_MAX];
	int hops = 0, r;
	*ret_inode = NULL;
	r = idx_path_normalize(rawpath, path, sizeof(path));
	if (r < 0)
		return path_error(r, rawpath);
	if (!path[0]) {
		/* The root itself ("./"): only a directory may describe it. */
		if (!S_ISDIR(a->mode))
			return cm_log_ret(-EPROTO, "entry '%s' replaces the root with a non-directory",
					  rawpath);
		return inode_set_attr(t->root->ino, a);
	}
	char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t blen = strlen(base);

	if (!strncmp(base, ".wh.", 4)) {
		struct idx_tnode *parent = t->root, *pp;
		if (slash) {
			*slash = 0;
			r = walk(t, path, false, true, &hops, t->root, &pp, &parent);
			*slash = '/';
			if (r == -ENOENT || (r == 0 && !parent))
				return 0; /* nothing to hide */
			if (r < 0)
				return path_error(r, rawpath);
			if (!S_ISDIR(parent->ino->mode))
				return 0;
		}
		if (!strcmp(base, ".wh..wh..opq")) {
			prune_lower(t, parent);
			return 0;
		}
		const char *name = base + 4;
		size_t nlen = blen - 4;
		if (nlen == 0 || (nlen == 1 && name[0] == '.') || (nlen == 2 && !memcmp(name, "..", 2)))
			return cm_log_ret(-EPROTO, "entry '%s': invalid whiteout", rawpath);
		struct idx_tnode *victim = lookup(t, parent, name, nlen);
		if (victim)
			whiteout(t, victim);
		return 0;
	}

	struct idx_tnode *parent, *existing;
	r = walk(t, path, true, false, &hops, t->root, &parent, &existing);
	if (r < 0)
		return path_error(r, rawpath);
	if (existing == t->root)
		return cm_log_ret(-EPROTO, "entry '%s' names the root", rawpath);

	if (S_ISDIR(a->mode) && existing && S_ISDIR(existing->ino->mode)) {
		r = inode_set_attr(existing->ino, a);
		if (r == 0)
			touch(t, existing);
		return r;
	}
	if (existing)
		node_remove(t, existing);

	struct idx_tnode_inode *in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	r = inode_set_attr(in, a);
	if (r == 0 && S_ISLNK(a->mode)) {
		in->link = strdup(a->link ? a->link : "");
		in->size = in->link ? strlen(in->link) : 0;
		if (!in->link)
			r = -ENOMEM;
	}
	struct idx_tnode *nd;
	if (r == 0)
		r = node_new(t, parent, base, blen, in, &nd);
	if (r < 0) {
		in->refs = 1;
		inode_unref(in);
		return r;
	}
	if (S_ISREG(a->mode))
		*ret_inode = in;
	return 0;
}

int idx_tree_link(struct idx_tree *t, const char *rawpath, const char *rawtarget)
{
	char path[PATH_MAX], target[PATH_MAX];
	int hops = 0, r;
	r = idx_path_normalize(rawpath, path, sizeof(path));
	if (r < 0)
		return path_error(r, rawpath);
	r = idx_path_normalize(rawtarget, target, sizeof(target));
	if (r < 0)
		return path_error(r, rawtarget);
	if (!path[0] || !target[0])
		return cm_log_ret(-EPROTO, "hardlink '%s' -> '%s' involves the root", rawpath, rawtarget);
	struct idx_tnode *tparent, *tnode;
	r = walk(t, target, false, false, &hops, t->root, &tparent, &tnode);
	if (r < 0 && r != -ENOENT)
		return path_error(r, rawtarget);
	if (r < 0 || !tnode)
		return cm_log_ret(-EPROTO, "hardlink '%s' -> '%s': target does not exist", rawpath,
				  rawtarget);
	if (S_ISDIR(tnode->ino->mode))
		return cm_log_ret(-EPROTO, "hardlink '%s' -> '%s': target is a directory", rawpath,
				  rawtarget);
	struct idx_tnode *parent, *existing;
	hops = 0;
	r = walk(t, path, true, false, &hops, t->root, &parent, &existing);
	if (r < 0)
		return path_error(r, rawpath);
	if (existing && existing->ino == tnode->ino) {
		touch(t, existing);
		return 0;
	}
	struct idx_tnode_inode *in = tnode->ino;
	in->refs++; /* keep it alive if `existing` is its other name's ancestor... or itself */
	if (existing)
		node_remove(t, existing);
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	struct idx_tnode *nd;
	r = node_new(t, parent, base, strlen(base), in, &nd);
	inode_unref(in);
	return r;
}

struct idx_tnode *idx_tree_resolve(struct idx_tree *t, const char *path, bool follow_last)
{
	struct idx_tnode *parent, *nd;
	int hops = 0;
	if (walk(t, path, false, follow_last, &hops, t->root, &parent, &nd) < 0)
		return NULL;
	return nd;
}

static int cmp_child(const void *a, const void *b)
{
	const struct idx_tnode *x = *(const struct idx_tnode *const *)a;
	const struct idx_tnode *y = *(const struct idx_tnode *const *)b;
	int c = memcmp(x->name, y->name, MIN(x->name_len, y->name_len));
	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static void sort_rec(struct idx_tnode *nd)
{
	if (!nd->nchildren)
		return;
	qsort(nd->children, nd->nchildren, sizeof(nd->children[0]), cmp_child);
	for (uint32_t i = 0; i < nd->nchildren; i++) {
		nd->children[i]->pos = i;
		sort_rec(nd->children[i]);
	}
}

void idx_tree_sort(struct idx_tree *t)
{
	sort_rec(t->root);
}
