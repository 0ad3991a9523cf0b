/*
 * libarchive, loaded with dlopen() on first use instead of linked.
 *
 * Why: libarchive's dependencies (libxml2 and through it ICU's 30 MB, liblzma, libbz2, liblz4,
 * libacl, nettle) cost milliseconds at every start of every program linking the indexer,
 * while only reading a layer needs them. This is systemd's pattern for optional libraries
 * (src/shared/dlfcn-util.c).
 *
 * Each function the module calls has a pointer `sym_<name>` declared with the type of the
 * real prototype from <archive.h>/<archive_entry.h> (typeof), so calls stay type-checked; the
 * macros below send the usual names to those pointers, so call sites keep reading
 * `archive_read_new()`.
 *
 * Include this header, only in files that call libarchive, and call idx_archive_load()
 * before the first call (idx_layer_read() does): until then every sym_ pointer is NULL.
 */
#pragma once

#include <archive.h>
#include <archive_entry.h>

/* The libarchive ABI the pointers are resolved from. */
#define IDX_ARCHIVE_SONAME "libarchive.so.13"

/* Every libarchive function the indexer calls (X-macro: X(name)). */
#define IDX_ARCHIVE_SYMBOLS(X)                                                                     \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_gid)                                                                       \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_mtime)                                                                     \
	X(archive_entry_mtime_nsec)                                                                \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_perm)                                                                      \
	X(archive_entry_rdevmajor)                                                                 \
	X(archive_entry_rdevminor)                                                                 \
	X(archive_entry_size)                                                                      \
	X(archive_entry_symlink)                                                                   \
	X(archive_entry_uid)                                                                       \
	X(archive_entry_xattr_next)                                                                \
	X(archive_entry_xattr_reset)                                                               \
	X(archive_error_string)                                                                    \
	X(archive_read_data_block)                                                                 \
	X(archive_read_free)                                                                       \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open)                                                                       \
	X(archive_read_support_format_gnutar)                                                      \
	X(archive_read_support_format_tar)                                                         \
	X(archive_set_error)

#define IDX_ARCHIVE_DECLARE(name) extern typeof(name) *sym_##name;
IDX_ARCHIVE_SYMBOLS(IDX_ARCHIVE_DECLARE)
#undef IDX_ARCHIVE_DECLARE

/*
 * Load libarchive.so.13 and resolve every symbol above, once per process (pthread_once);
 * later calls return the first call's result without logging again.
 *
 * Returns 0 when the sym_ pointers are set; -ELIBACC when the library cannot be loaded
 * (logged: "libarchive.so.13 cannot be loaded: <dlerror>"), -ELIBBAD when it lacks a symbol
 * (logged with the name). The library stays loaded for the life of the process.
 * Thread-safe.
 */
int idx_archive_load(void);

/* Call sites keep libarchive's names. */
#define archive_entry_filetype(...)		sym_archive_entry_filetype(__VA_ARGS__)
#define archive_entry_gid(...)			sym_archive_entry_gid(__VA_ARGS__)
#define archive_entry_hardlink(...)		sym_archive_entry_hardlink(__VA_ARGS__)
#define archive_entry_mtime(...)		sym_archive_entry_mtime(__VA_ARGS__)
#define archive_entry_mtime_nsec(...)		sym_archive_entry_mtime_nsec(__VA_ARGS__)
#define archive_entry_pathname(...)		sym_archive_entry_pathname(__VA_ARGS__)
#define archive_entry_perm(...)			sym_archive_entry_perm(__VA_ARGS__)
#define archive_entry_rdevmajor(...)		sym_archive_entry_rdevmajor(__VA_ARGS__)
#define archive_entry_rdevminor(...)		sym_archive_entry_rdevminor(__VA_ARGS__)
#define archive_entry_size(...)			sym_archive_entry_size(__VA_ARGS__)
#define archive_entry_symlink(...)		sym_archive_entry_symlink(__VA_ARGS__)
#define archive_entry_uid(...)			sym_archive_entry_uid(__VA_ARGS__)
#define archive_entry_xattr_next(...)		sym_archive_entry_xattr_next(__VA_ARGS__)
#define archive_entry_xattr_reset(...)		sym_archive_entry_xattr_reset(__VA_ARGS__)
#define archive_error_string(...)		sym_archive_error_string(__VA_ARGS__)
#define archive_read_data_block(...)		sym_archive_read_data_block(__VA_ARGS__)
#define archive_read_free(...)			sym_archive_read_free(__VA_ARGS__)
#define archive_read_new(...)			sym_archive_read_new(__VA_ARGS__)
#define archive_read_next_header(...)		sym_archive_read_next_header(__VA_ARGS__)
#define archive_read_open(...)			sym_archive_read_open(__VA_ARGS__)
#define archive_read_support_format_gnutar(...) sym_archive_read_support_format_gnutar(__VA_ARGS__)
#define archive_read_support_format_tar(...)	sym_archive_read_support_format_tar(__VA_ARGS__)
#define archive_set_error(...)			sym_archive_set_error(__VA_ARGS__)
