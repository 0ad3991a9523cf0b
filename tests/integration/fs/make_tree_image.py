#!/usr/bin/env python3
"""Write an OCI image layout whose layers exercise every part of the POSIX view (stdlib only).

make_tree_image.py DIR TAG [--seed S] [--big-mib N] [--variant V]

Three gzip layers: regular files of many sizes (random and compressible, one of --big-mib
MiB), directories with odd modes, symlinks (relative, absolute, dangling), hardlinks
(several names, across directories), character and block devices, a FIFO, setuid/setgid/
sticky bits, owners other than root, user.* xattrs, nanosecond mtimes; the second and third
layers delete files (whiteouts), replace a directory's contents (opaque directory), replace
a file by a directory and change a file. --variant changes a few files only, so two
variants share most chunks. Deterministic for a seed.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import tarfile

MT = 1700000000


def put_blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(root, "blobs", "sha256", d)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return "sha256:" + d, len(data)


class Layer:
    def __init__(self):
        self.raw = io.BytesIO()
        self.t = tarfile.open(fileobj=self.raw, mode="w", format=tarfile.PAX_FORMAT)

    def _ti(self, name, typ, mode, uid=0, gid=0, mtime=MT, nsec=0, xattrs=None):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        pax = {}
        if nsec:
            pax["mtime"] = "%d.%09d" % (mtime, nsec)
        for k, v in (xattrs or {}).items():
            pax["SCHILY.xattr." + k] = v
        ti.pax_headers = pax
        return ti

    def dir(self, name, mode=0o755, **kw):
        self.t.addfile(self._ti(name, tarfile.DIRTYPE, mode, **kw))

    def file(self, name, data, mode=0o644, **kw):
        ti = self._ti(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self.t.addfile(ti, io.BytesIO(data))

    def symlink(self, name, target, **kw):
        ti = self._ti(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.t.addfile(ti)

    def hardlink(self, name, target, **kw):
        ti = self._ti(name, tarfile.LNKTYPE, 0o644, **kw)
        ti.linkname = target
        self.t.addfile(ti)

    def dev(self, name, typ, major, minor, mode=0o660, **kw):
        ti = self._ti(name, typ, mode, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.t.addfile(ti)

    def blob(self):
        self.t.close()
        raw = self.raw.getvalue()
        gz = io.BytesIO()
        with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
            g.write(raw)
        return raw, gz.getvalue()


def rand(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n)) if n < 4096 else rng.randbytes(n)


def text(rng, n):
    words = [b"alpha", b"beta", b"gamma", b"delta", b"lorem", b"ipsum", b"\n", b"isorun"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def layers(seed, big_mib, variant):
    rng = random.Random(seed)
    l0 = Layer()
    l0.dir("etc")
    l0.file("etc/os-release", b'NAME="isorun test"\nID=isorun\n')
    l0.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    l0.dir("usr", nsec=123456789)
    l0.dir("usr/bin")
    l0.dir("usr/lib", mode=0o750, uid=0, gid=10)
    l0.file("usr/bin/tool", rand(rng, 300000), mode=0o755, nsec=999999999)
    l0.file("usr/bin/suid", rand(rng, 5000), mode=0o4755)
    l0.file("usr/bin/sgid", rand(rng, 100), mode=0o2711, gid=50)
    l0.file("usr/lib/libbig.so", rand(rng, big_mib << 20), mode=0o644, nsec=5)
    l0.file("usr/lib/text.txt", text(rng, 700000))
    l0.file("usr/lib/empty", b"")
    l0.file("usr/lib/one", b"x")
    l0.symlink("usr/lib/libbig.so.1", "libbig.so")
    l0.symlink("usr/bin/abs", "/usr/bin/tool")
    l0.symlink("usr/bin/dangling", "../nowhere/at/all")
    l0.hardlink("usr/bin/tool-hl", "usr/bin/tool")
    l0.dir("home", mode=0o755)
    l0.dir("home/user", mode=0o700, uid=1000, gid=1000)
    l0.file("home/user/.profile", b"export PS1='$ '\n", uid=1000, gid=1000, mode=0o600)
    l0.dir("tmp", mode=0o1777)
    l0.dir("dev")
    l0.dev("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666)
    l0.dev("dev/sda", tarfile.BLKTYPE, 8, 0)
    l0.dev("dev/fifo", tarfile.FIFOTYPE, 0, 0, mode=0o644)
    l0.dir("data")
    for i in range(40):
        l0.file("data/f%03d" % i, rand(rng, rng.randint(0, 200000)),
                xattrs={"user.index": str(i)} if i % 7 == 0 else None)
    l0.file("data/xattrs", b"has xattrs", xattrs={"user.a": "1", "user.long": "v" * 300})
    l0.dir("opaque")
    l0.file("opaque/old1", b"old one")
    l0.file("opaque/old2", b"old two")
    l0.file("replaced", b"a file that becomes a directory")
    l0.file("gone", b"deleted in layer 1")
    for i in range(1, 9):  # explicit parents: implicit ones have no defined mtime
        l0.dir("/".join(["deep", "a", "b", "c", "d", "e", "f", "g"][:i]), nsec=i)
    l0.file("deep/a/b/c/d/e/f/g/leaf", b"leaf")

    l1 = Layer()
    l1.dir("opaque")
    l1.file("opaque/.wh..wh..opq", b"")
    l1.file("opaque/new", b"only this survives")
    l1.file(".wh.gone", b"")
    l1.file(".wh.replaced", b"")
    l1.dir("replaced", mode=0o711)
    l1.file("replaced/inside", b"now a directory")
    l1.dir("usr")
    l1.dir("usr/lib", mode=0o750, uid=0, gid=10)
    l1.file("usr/lib/text.txt", text(rng, 800000), mode=0o640)
    l1.dir("links")
    l1.hardlink("links/h1", "data/f001")
    l1.hardlink("links/h2", "data/f001")
    l1.dir("wide")
    for i in range(300):
        l1.file("wide/entry-%04d" % i, ("%d" % i).encode())

    l2 = Layer()
    l2.dir("data")
    l2.file("data/f002", text(rng, 50000) + variant.encode())
    l2.file("data/.wh.f003", b"")
    l2.file("variant", ("variant %s\n" % variant).encode())
    return [l0, l1, l2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("tag")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--big-mib", type=int, default=4)
    ap.add_argument("--variant", default="a")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diffs = [], []
    for l in layers(a.seed, a.big_mib, a.variant):
        raw, gz = l.blob()
        d, n = put_blob(a.dir, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": d, "size": n})
        diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Env": ["PATH=/usr/bin"], "WorkingDir": "/"},
           "rootfs": {"type": "layers", "diff_ids": diffs}, "history": []}
    cd, cn = put_blob(a.dir, json.dumps(cfg, sort_keys=True).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": cd, "size": cn},
           "layers": descs}
    md, mn = put_blob(a.dir, json.dumps(man, sort_keys=True).encode())
    idx_path = os.path.join(a.dir, "index.json")
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": []}
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            idx = json.load(f)
    idx["manifests"] = [m for m in idx["manifests"]
                        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.tag]
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": md, "size": mn,
                             "annotations": {"org.opencontainers.image.ref.name": a.tag}})
    with open(idx_path, "w") as f:
        json.dump(idx, f)
    print(md)


if __name__ == "__main__":
    main()
