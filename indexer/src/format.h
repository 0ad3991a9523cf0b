/*
 * On-disk layout of an isorun index, version 1. docs/format.md is the normative description;
 * this header mirrors it. All integers little-endian; every section starts 8-byte aligned.
 *
 * Header, 512 bytes at offset 0:
 *   0   8  magic "ISRNIDX1"
 *   8   2  major version (1): readers reject other majors
 *   10  2  minor version (0): readers accept any minor of their major
 *   12  4  header size (512)
 *   16  8  file size
 *   24  4  section slots (16)
 *   28  4  flags (0)
 *   32 32  SHA-256 of the source image manifest
 *   64 32  SHA-256 of the image config blob
 *   96  4  chunker min size, 100 4 avg size, 104 4 max size
 *   108 20 reserved (0)
 *   128 16 x 24 section table: { u64 offset, u64 size, u32 count, u32 entry_size }
 */
#pragma once

#include <stdint.h>

#define IDXF_MAGIC	  "ISRNIDX1"
#define IDXF_MAJOR	  1
#define IDXF_MINOR	  0
#define IDXF_HEADER_SIZE  512
#define IDXF_SLOTS	  16
#define IDXF_SECTAB_OFF	  128
#define IDXF_SECT_SIZE	  24

enum idxf_section {
	IDXF_SEC_STRINGS = 0,  /* bytes; every string is followed by a NUL */
	IDXF_SEC_INODES = 1,   /* IDXF_INODE_SIZE records, inode n at index n-1 */
	IDXF_SEC_DIRENTS = 2,  /* IDXF_DIRENT_SIZE records, each directory's run sorted by name */
	IDXF_SEC_EXTENTS = 3,  /* IDXF_EXTENT_SIZE records, each file's run in offset order */
	IDXF_SEC_CHUNKS = 4,   /* IDXF_CHUNK_SIZE records, in pack order */
	IDXF_SEC_PACKS = 5,    /* IDXF_PACK_SIZE records */
	IDXF_SEC_PREFETCH = 6, /* u32 chunk indexes */
	IDXF_SEC_XATTRS = 7,   /* IDXF_XATTR_SIZE records, each inode's run sorted by name */
	IDXF_SEC_CONFIG = 8,   /* the image config blob, verbatim */
	IDXF_SEC_COUNT = 9,
};

/* Inode record. */
#define IDXF_INODE_SIZE	       64
#define IDXF_INO_MODE	       0
#define IDXF_INO_UID	       4
#define IDXF_INO_GID	       8
#define IDXF_INO_NLINK	       12
#define IDXF_INO_SIZE	       16
#define IDXF_INO_MTIME_SEC     24
#define IDXF_INO_MTIME_NSEC    32
#define IDXF_INO_RDEV_MAJOR    36
#define IDXF_INO_RDEV_MINOR    40
#define IDXF_INO_PARENT	       44
#define IDXF_INO_DATA_FIRST    48 /* dir: dirent; reg: extent; lnk: string offset */
#define IDXF_INO_DATA_COUNT    52 /* dir: entries; reg: extents; lnk: target length */
#define IDXF_INO_XATTR_FIRST   56
#define IDXF_INO_XATTR_COUNT   60

/* Directory entry. */
#define IDXF_DIRENT_SIZE       16
#define IDXF_DE_NAME_OFF       0
#define IDXF_DE_NAME_LEN       4 /* u16 */
#define IDXF_DE_TYPE	       6 /* u8, DT_* */
#define IDXF_DE_PAD	       7
#define IDXF_DE_INO	       8
#define IDXF_DE_RESERVED       12

/* Extent: one chunk of a regular file. */
#define IDXF_EXTENT_SIZE       16
#define IDXF_EXT_OFFSET	       0 /* u64 */
#define IDXF_EXT_CHUNK	       8
#define IDXF_EXT_RESERVED      12

/* Chunk. */
#define IDXF_CHUNK_SIZE	       56
#define IDXF_CH_DIGEST	       0
#define IDXF_CH_USIZE	       32
#define IDXF_CH_CSIZE	       36
#define IDXF_CH_PACK	       40
#define IDXF_CH_FLAGS	       44
#define IDXF_CH_PACK_OFFSET    48 /* u64 */

/* Pack. */
#define IDXF_PACK_SIZE	       48
#define IDXF_PK_DIGEST	       0
#define IDXF_PK_SIZE	       32 /* u64 */
#define IDXF_PK_CHUNK_FIRST    40
#define IDXF_PK_CHUNK_COUNT    44

/* Extended attribute. */
#define IDXF_XATTR_SIZE	       16
#define IDXF_XA_NAME_OFF       0
#define IDXF_XA_NAME_LEN       4
#define IDXF_XA_VALUE_OFF      8
#define IDXF_XA_VALUE_LEN      12

/* Limits a valid index respects (readers reject more). */
#define IDXF_MAX_CHUNK	       (4u << 20) /* largest chunk, uncompressed */
#define IDXF_MAX_NAME	       255
#define IDXF_MAX_SYMLINK       4095
#define IDXF_MAX_XATTR_VALUE   65536
#define IDXF_MAX_CONFIG	       (8u << 20)
