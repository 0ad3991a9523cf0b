#!/usr/bin/env python3
"""Compare two extracted image trees: every path's type, mode (with setuid/setgid/sticky),
uid, gid, size, mtime in nanoseconds (not for symlinks unless --symlink-mtime), symlink target,
device numbers, xattrs, SHA-256 of regular file contents, and hardlink groups.

usage: treecmp.py REFERENCE CANDIDATE [--ignore-root-mtime]
Prints the first differences (at most 40) and exits 1 if there are any, 0 if identical.
"""
import hashlib
import os
import stat
import sys


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def scan(root):
    """path -> attributes; regular files with several names get their hardlink group."""
    entries, inodes = {}, {}

    def add(full, rel):
        st = os.lstat(full)
        a = {
            'type': stat.S_IFMT(st.st_mode),
            'mode': oct(stat.S_IMODE(st.st_mode)),
            'uid': st.st_uid,
            'gid': st.st_gid,
            'xattrs': xattrs(full),
        }
        if not stat.S_ISLNK(st.st_mode):
            a['mtime_ns'] = st.st_mtime_ns
        if stat.S_ISREG(st.st_mode):
            a['size'] = st.st_size
            a['sha256'] = sha256(full)
            a['nlink'] = st.st_nlink
            if st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            a['target'] = os.readlink(full)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            a['rdev'] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        entries[rel] = a

    add(root, '/')
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked dirs are not descended
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            add(full, '/' + os.path.relpath(full, root))
    for group in inodes.values():
        for p in group:
            entries[p]['hardlinks'] = tuple(sorted(group))
    return entries


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ref, cand = scan(args[0]), scan(args[1])
    if '--ignore-root-mtime' in sys.argv:
        for t in (ref, cand):
            t['/'].pop('mtime_ns', None)
    diffs = []
    for p in sorted(set(ref) | set(cand)):
        if p not in cand:
            diffs.append(f'{p}: missing from the candidate')
        elif p not in ref:
            diffs.append(f'{p}: only in the candidate')
        elif ref[p] != cand[p]:
            for k in sorted(set(ref[p]) | set(cand[p])):
                if ref[p].get(k) != cand[p].get(k):
                    diffs.append(f'{p}: {k}: reference {ref[p].get(k)!r} candidate {cand[p].get(k)!r}')
    for d in diffs[:40]:
        print(d)
    if diffs:
        print(f'{len(diffs)} differences over {len(ref)} reference paths')
        return 1
    nfiles = sum(1 for a in ref.values() if stat.S_ISREG(a['type']))
    nlinks = sum(1 for a in ref.values() if 'hardlinks' in a)
    nx = sum(1 for a in ref.values() if a['xattrs'])
    print(f'identical: {len(ref)} paths ({nfiles} files, {nlinks} in hardlink groups, {nx} with xattrs)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
