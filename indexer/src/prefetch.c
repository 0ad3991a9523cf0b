/*
 * Startup prefetch list derived from the image config (until recorded traces exist).
 * Order = the order a dynamic loader touches files: the program, its interpreter,
 * ld.so.cache, then libraries breadth-first, then the files of libc's start-up (nsswitch,
 * passwd, locale...).
 */
#include "build_int.h"

#include "common/cleanup.h"
#include "common/log.h"

#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES   512
#define ELF_MAX	    (64u << 20) /* read at most this much of a binary to parse it */

struct pf {
	struct idx_tree *t;
	idx_read_file_fn rd;
	void *ud;
	uint32_t rank;
	char **libdirs;
	size_t nlibdirs;
	char *queue[MAX_FILES]; /* paths of ELF objects to scan */
	size_t qhead, qtail;
};

static struct idx_tnode_inode *mark(struct pf *p, const char *path)
{
	struct idx_tnode *nd = idx_tree_resolve(p->t, path, false);
	/* Mark every symlink on the way, then the target. */
	for (int hops = 0; nd && S_ISLNK(nd->ino->mode) && hops < 40; hops++) {
		if (!nd->ino->prefetch_rank)
			nd->ino->prefetch_rank = ++p->rank;
		nd = idx_tree_resolve(p->t, path, true);
	}
	if (!nd || !S_ISREG(nd->ino->mode))
		return NULL;
	if (!nd->ino->prefetch_rank)
		nd->ino->prefetch_rank = ++p->rank;
	return nd->ino;
}

static void enqueue(struct pf *p, const char *path)
{
	for (size_t i = 0; i < p->qtail; i++)
		if (!strcmp(p->queue[i], path))
			return;
	if (p->qtail < MAX_FILES) {
		char *s = strdup(path);
		if (s)
			p->queue[p->qtail++] = s;
	}
}

static void add_libdir(struct pf *p, const char *dir)
{
	for (size_t i = 0; i < p->nlibdirs; i++)
		if (!strcmp(p->libdirs[i], dir))
			return;
	char **v = realloc(p->libdirs, (p->nlibdirs + 1) * sizeof(char *));
	if (!v)
		return;
	p->libdirs = v;
	if ((v[p->nlibdirs] = strdup(dir)))
		p->nlibdirs++;
}

/* /etc/ld.so.conf and its includes (only the DIR/NAME.conf glob form, as Debian uses). */
static void read_ldconf(struct pf *p, const char *path, int depth)
{
	struct idx_tnode_inode *in = mark(p, path);
	uint8_t *buf;
	size_t len;
	if (!in || depth > 4 || p->rd(p->ud, in, 1 << 20, &buf, &len) < 0)
		return;
	char *save, *line = strtok_r((char *)buf, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		size_t n = strlen(line);
		while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (!n)
			continue;
		if (!strncmp(line, "include ", 8)) {
			const char *pat = line + 8;
			const char *star = strstr(pat, "/*.conf");
			if (!star)
				continue;
			char dir[PATH_MAX];
			snprintf(dir, sizeof(dir), "%.*s", (int)(star - pat), pat);
			struct idx_tnode *d = idx_tree_resolve(p->t, dir, true);
			if (!d || !S_ISDIR(d->ino->mode))
				continue;
			for (uint32_t i = 0; i < d->nchildren; i++) {
				struct idx_tnode *c = d->children[i];
				if (c->name_len > 5 && !strcmp(c->name + c->name_len - 5, ".conf")) {
					char sub[PATH_MAX];
					int k = snprintf(sub, sizeof(sub), "%s/%s", dir, c->name);
					if (k > 0 && (size_t)k < sizeof(sub))
						read_ldconf(p, sub, depth + 1);
				}
			}
		} else if (line[0] == '/') {
			add_libdir(p, line);
		}
	}
	free(buf);
}

static bool find_lib(struct pf *p, const char *name, const char *origin, char **rpaths, size_t nr,
		     char out[PATH_MAX])
{
	for (size_t i = 0; i < nr + p->nlibdirs; i++) {
		const char *d = i < nr ? rpaths[i] : p->libdirs[i - nr];
		char dir[PATH_MAX];
		if (!strncmp(d, "$ORIGIN", 7))
			snprintf(dir, sizeof(dir), "%s%s", origin, d + 7);
		else
			snprintf(dir, sizeof(dir), "%s", d);
		int k = snprintf(out, PATH_MAX, "%s/%s", dir, name);
		if (k < 0 || k >= PATH_MAX)
			continue;
		struct idx_tnode *nd = idx_tree_resolve(p->t, out, true);
		if (nd && S_ISREG(nd->ino->mode))
			return true;
	}
	return false;
}

/* Parse an ELF64 little-endian object: PT_INTERP, DT_NEEDED, DT_RUNPATH/DT_RPATH. */
static void scan_elf(struct pf *p, const char *path, const uint8_t *b, size_t len)
{
	if (len < sizeof(Elf64_Ehdr) || memcmp(b, ELFMAG, SELFMAG) || b[EI_CLASS] != ELFCLASS64 ||
	    b[EI_DATA] != ELFDATA2LSB)
		return;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)b;
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(b + eh->e_phoff);
	const Elf64_Phdr *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_INTERP && ph[i].p_offset < len && ph[i].p_filesz < PATH_MAX &&
		    ph[i].p_filesz <= len - ph[i].p_offset) {
			char interp[PATH_MAX];
			memcpy(interp, b + ph[i].p_offset, ph[i].p_filesz);
			interp[ph[i].p_filesz] = 0;
			if (mark(p, interp))
				enqueue(p, interp);
			mark(p, "/etc/ld.so.preload");
			mark(p, "/etc/ld.so.cache");
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn = &ph[i];
		}
	}
	if (!dyn || dyn->p_offset > len || dyn->p_filesz > len - dyn->p_offset)
		return;
	const Elf64_Dyn *d = (const Elf64_Dyn *)(b + dyn->p_offset);
	size_t nd = dyn->p_filesz / sizeof(Elf64_Dyn);
	uint64_t strtab_va = 0;
	for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL; i++)
		if (d[i].d_tag == DT_STRTAB)
			strtab_va = d[i].d_un.d_ptr;
	/* Map the string table's virtual address to a file offset through PT_LOAD. */
	uint64_t strtab = UINT64_MAX;
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && strtab_va >= ph[i].p_vaddr &&
		    strtab_va - ph[i].p_vaddr < ph[i].p_filesz)
			strtab = strtab_va - ph[i].p_vaddr + ph[i].p_offset;
	if (strtab >= len)
		return;
	char origin[PATH_MAX];
	snprintf(origin, sizeof(origin), "%s", path);
	char *slash = strrchr(origin, '/');
	if (slash)
		*slash = 0;
	char *rpaths[16];
	size_t nr = 0;
	for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL; i++) {
		if ((d[i].d_tag != DT_RUNPATH && d[i].d_tag != DT_RPATH) || d[i].d_un.d_val >= len - strtab)
			continue;
		const char *s = (const char *)b + strtab + d[i].d_un.d_val;
		if (!memchr(s, 0, len - strtab - d[i].d_un.d_val))
			continue;
		char *copy = strdup(s), *save, *tok;
		for (tok = copy ? strtok_r(copy, ":", &save) : NULL; tok && nr < ARRAY_SIZE(rpaths);
		     tok = strtok_r(NULL, ":", &save))
			rpaths[nr++] = strdup(tok);
		free(copy);
	}
	for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL; i++) {
		if (d[i].d_tag != DT_NEEDED || d[i].d_un.d_val >= len - strtab)
			continue;
		const char *s = (const char *)b + strtab + d[i].d_un.d_val;
		if (!memchr(s, 0, len - strtab - d[i].d_un.d_val) || strchr(s, '/'))
			continue;
		char lib[PATH_MAX];
		if (find_lib(p, s, origin, rpaths, nr, lib) && mark(p, lib))
			enqueue(p, lib);
	}
	for (size_t i = 0; i < nr; i++)
		free(rpaths[i]);
}

static void scan(struct pf *p, const char *path, int depth)
{
	struct idx_tnode_inode *in = mark(p, path);
	uint8_t *b;
	size_t len;
	if (!in || depth > 4 || p->rd(p->ud, in, ELF_MAX, &b, &len) < 0)
		return;
	if (len > 2 && b[0] == '#' && b[1] == '!') {
		/* #!interpreter [arg]: the interpreter runs first. */
		char line[PATH_MAX];
		size_t n = 0, i = 2;
		while (i < len && (b[i] == ' ' || b[i] == '\t'))
			i++;
		while (i < len && n < sizeof(line) - 1 && b[i] != '\n' && b[i] != ' ' && b[i] != '\t')
			line[n++] = (char)b[i++];
		line[n] = 0;
		free(b);
		if (n && line[0] == '/')
			scan(p, line, depth + 1);
		return;
	}
	scan_elf(p, path, b, len);
	free(b);
}

static char *which(struct pf *p, const char *prog, const struct idx_config *cfg)
{
	if (strchr(prog, '/'))
		return strdup(prog);
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char **e = cfg && cfg->env ? cfg->env : NULL; e && *e; e++)
		if (!strncmp(*e, "PATH=", 5))
			path = *e + 5;
	_cleanup_free_ char *copy = strdup(path);
	char *save, *dir;
	for (dir = copy ? strtok_r(copy, ":", &save) : NULL; dir; dir = strtok_r(NULL, ":", &save)) {
		char full[PATH_MAX];
		int k = snprintf(full, sizeof(full), "%s/%s", dir, prog);
		if (k < 0 || (size_t)k >= sizeof(full))
			continue;
		struct idx_tnode *nd = idx_tree_resolve(p->t, full, true);
		if (nd && S_ISREG(nd->ino->mode) && (nd->ino->mode & 0111))
			return strdup(full);
	}
	return NULL;
}

int idx_prefetch_compute(struct idx_tree *t, const struct idx_config *cfg, idx_read_file_fn rd,
			 void *ud)
{
	struct pf p = {.t = t, .rd = rd, .ud = ud};
	static const char *std_libdirs[] = {
		"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
		"/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
	};
	read_ldconf(&p, "/etc/ld.so.conf", 0);
	for (size_t i = 0; i < ARRAY_SIZE(std_libdirs); i++)
		add_libdir(&p, std_libdirs[i]);

	const char *prog = NULL;
	if (cfg && cfg->entrypoint && cfg->entrypoint[0])
		prog = cfg->entrypoint[0];
	else if (cfg && cfg->cmd && cfg->cmd[0])
		prog = cfg->cmd[0];
	/* A shell is what runs commands in a sandbox when nothing else is named. */
	_cleanup_free_ char *exe = prog ? which(&p, prog, cfg) : NULL;
	if (exe)
		enqueue(&p, exe);
	_cleanup_free_ char *sh = which(&p, "sh", cfg);
	if (sh)
		enqueue(&p, sh);
	while (p.qhead < p.qtail)
		scan(&p, p.queue[p.qhead++], 0);

	static const char *common_files[] = {
		"/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/localtime", "/etc/hosts",
		"/etc/host.conf", "/etc/resolv.conf", "/etc/gai.conf",
		"/usr/lib/locale/locale-archive", "/usr/lib/locale/C.utf8/LC_CTYPE",
		"/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
	};
	for (size_t i = 0; i < ARRAY_SIZE(common_files); i++)
		mark(&p, common_files[i]);
	for (size_t i = 0; i < p.qtail; i++)
		free(p.queue[i]);
	for (size_t i = 0; i < p.nlibdirs; i++)
		free(p.libdirs[i]);
	free(p.libdirs);
	log_debug("prefetch list: %u files", p.rank);
	return 0;
}
