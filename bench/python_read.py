#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Read a whole VMDK image from Python, in chunks, as bench/python.sh times
it (issue 15).

    python_read.py [--chunk BYTES] [--sha256] vmdkit|aligned|pyvmdk IMAGE

vmdkit: `vmdkit.open(IMAGE)`, then `n = disk.readinto(buf)` into one
preallocated bytearray until it returns 0; aligned: the same into a
page-aligned buffer (`mmap.mmap(-1, CHUNK)`).  pyvmdk (libvmdk's binding,
Debian's python3-libvmdk): `handle.open(IMAGE)`,
`open_extent_data_files()`, then `read_buffer_at_offset(CHUNK, offset)`
(the last one shorter) up to the media size.  CHUNK: 1 MiB by default.

Prints one line on stdout: "open SECONDS loop SECONDS bytes N" and, with
--sha256, "sha256 HEX" (the hashing is then inside the loop: a separate,
untimed pass).  The import is before both clocks: the process time minus
these two is the interpreter's start-up and the import.  (No argparse:
its import alone takes longer than importing vmdkit; hashlib is imported
only for --sha256.)
"""
import sys
import time


def read_vmdkit(path, chunk, h, aligned=False):
    import vmdkit
    if aligned:
        import mmap
    t0 = time.perf_counter()
    disk = vmdkit.open(path)
    t1 = time.perf_counter()
    # aligned: a page-aligned buffer (an anonymous mmap), which the kernel
    # copies into at full speed; a bytearray lies 16 bytes past a page.
    buf = mmap.mmap(-1, chunk) if aligned else bytearray(chunk)
    view = memoryview(buf)
    readinto = disk.readinto
    total = 0
    if h is None:
        while n := readinto(buf):
            total += n
    else:
        while n := readinto(buf):
            h.update(view[:n])
            total += n
    t2 = time.perf_counter()
    if total != disk.size:
        sys.exit("python_read.py: read %d bytes of %d" % (total, disk.size))
    disk.close()
    return t1 - t0, t2 - t1, total


def read_pyvmdk(path, chunk, h):
    import pyvmdk
    t0 = time.perf_counter()
    handle = pyvmdk.handle()
    handle.open(path)
    handle.open_extent_data_files()
    size = handle.get_media_size()
    t1 = time.perf_counter()
    read = handle.read_buffer_at_offset
    off = 0
    while off < size:
        data = read(min(chunk, size - off), off)
        if not data:
            sys.exit("python_read.py: pyvmdk read nothing at %d" % off)
        if h is not None:
            h.update(data)
        off += len(data)
    t2 = time.perf_counter()
    handle.close()
    return t1 - t0, t2 - t1, off


def main():
    args = sys.argv[1:]
    chunk, h = 1 << 20, None
    while args and args[0].startswith("--"):
        if args[0] == "--chunk" and len(args) > 1:
            chunk = int(args[1], 0)
            args = args[2:]
        elif args[0] == "--sha256":
            import hashlib
            h = hashlib.sha256()
            args = args[1:]
        else:
            break
    if len(args) != 2 or args[0] not in ("vmdkit", "aligned", "pyvmdk") or chunk <= 0:
        sys.exit(__doc__.split("\n\n")[1])
    if args[0] == "pyvmdk":
        t_open, t_loop, total = read_pyvmdk(args[1], chunk, h)
    else:
        t_open, t_loop, total = read_vmdkit(args[1], chunk, h,
                                            args[0] == "aligned")
    print("open %.6f loop %.6f bytes %d" % (t_open, t_loop, total))
    if h is not None:
        print("sha256", h.hexdigest())


if __name__ == "__main__":
    main()
