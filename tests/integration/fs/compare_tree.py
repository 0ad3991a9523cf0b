#!/usr/bin/env python3
"""compare_tree.py A B: exit 0 when two trees are identical in everything a POSIX reader
sees: type, mode (with setuid/setgid/sticky), uid, gid, size, nanosecond mtime (not for
symlinks), symlink target, device numbers, xattrs (all namespaces listed), content SHA-256,
and hardlink groups. Prints every difference (at most 50) otherwise."""
import hashlib
import os
import stat
import sys


def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = p
    return out


def describe(p, ino_groups, rel):
    st = os.lstat(p)
    d = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
         "uid": st.st_uid, "gid": st.st_gid}
    try:
        d["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False)
                       for k in sorted(os.listxattr(p, follow_symlinks=False))}
    except OSError as e:
        d["xattrs"] = "error %s" % e.errno
    if stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(p)
        return d
    d["mtime_ns"] = st.st_mtime_ns
    if stat.S_ISREG(st.st_mode):
        d["size"] = st.st_size
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
        d["sha256"] = h.hexdigest()
        d["nlink"] = st.st_nlink
        ino_groups.setdefault(st.st_ino, []).append(rel)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return d


def main():
    a, b = sys.argv[1], sys.argv[2]
    ta, tb = walk(a), walk(b)
    diffs = []
    for k in sorted(set(ta) ^ set(tb)):
        diffs.append("%s: only in %s" % (k, a if k in ta else b))
    ga, gb = {}, {}
    for k in sorted(set(ta) & set(tb)):
        da, db = describe(ta[k], ga, k), describe(tb[k], gb, k)
        if da != db:
            for f in sorted(set(da) | set(db)):
                if da.get(f) != db.get(f):
                    diffs.append("%s: %s %r != %r" % (k, f, da.get(f), db.get(f)))
    groups_a = sorted(sorted(v) for v in ga.values() if len(v) > 1)
    groups_b = sorted(sorted(v) for v in gb.values() if len(v) > 1)
    if groups_a != groups_b:
        diffs.append("hardlink groups differ: %r != %r" % (groups_a, groups_b))
    for d in diffs[:50]:
        print(d)
    print("compared %d entries, %d hardlink groups: %s" %
          (len(ta), len(groups_a), "identical" if not diffs else "%d differences" % len(diffs)))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
