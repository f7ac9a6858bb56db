#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build hosted sparse and streamOptimized images the way VMware lays them
out, from the format specification (VMDK-FORMAT.md sections 1.3-1.5), with
a known pattern.  qemu-img cannot make these layouts.

Usage: make_vmware_layouts.py KIND DIR NAME

KIND:
  sparse-lazy     monolithicSparse, version 1, GD + RGD, grain tables only for
                  the regions that hold data (the other GD entries are 0, as
                  VMware leaves them); 256 MiB, 64 KiB grains.
  stream          streamOptimized as VMware exports it: header with gdOffset
                  GD_AT_END, descriptor, grain markers (zlib), a GT marker + GT
                  after each table's grains, tables without grains not written
                  (GD entry 0), a vSphere "type 4" marker in the middle, the
                  GD marker + GD, footer marker + footer, EOS marker.
  stream-nofooter the same, cut after the last grain table (no GD, footer or
                  EOS): readers must scan the markers.

Writes DIR/NAME.vmdk and DIR/NAME.raw (the bytes the disk must read as).
Standard library only.
"""
import os
import struct
import sys
import zlib

SECTOR = 512
GRAIN = 128                 # sectors
GTES = 512
CAP = 256 * 1024 * 1024 // SECTOR  # 256 MiB in sectors: 8 grain tables
GD_AT_END = 0xFFFFFFFFFFFFFFFF


def header(version, flags, gd, rgd, overhead, desc_off, desc_size, compress):
    h = struct.pack('<IIIQQQQIQQQB', 0x564D444B, version, flags, CAP, GRAIN,
                    desc_off, desc_size, GTES, rgd, gd, overhead, 0)
    h += b'\n \r\n' + struct.pack('<H', compress)
    return h.ljust(SECTOR, b'\0')


def descriptor(name, create_type):
    d = ('# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\n'
         'createType="%s"\n\n# Extent description\nRW %d SPARSE "%s.vmdk"\n\n'
         '# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n'
         'ddb.virtualHWVersion = "14"\nddb.toolsVersion = "2147483647"\n'
         % (create_type, CAP, name))
    return d.encode().ljust(20 * SECTOR, b'\0')


def pattern():
    """{grain number: 64 KiB of data}: grains in tables 0, 2 and 7 (the
    last); tables 1 and 3..6 stay empty."""
    g = {}
    gsz = GRAIN * SECTOR
    for n in (0, 1, 7, 511):                       # table 0
        g[n] = bytes((n * 7 + i) % 251 for i in range(gsz))
    g[2 * GTES + 5] = b'VMware lazily allocated table 2 ' * (gsz // 32)
    g[CAP // GRAIN - 1] = os.urandom(gsz)          # the disk's last grain
    return g


def raw_of(grains):
    raw = bytearray(CAP * SECTOR)
    gsz = GRAIN * SECTOR
    for n, data in grains.items():
        raw[n * gsz:(n + 1) * gsz] = data
    return bytes(raw)


def sparse_lazy(name):
    grains = pattern()
    n_gdes = CAP // (GRAIN * GTES)
    gd_sectors = (n_gdes * 4 + SECTOR - 1) // SECTOR
    rgd, gd = 21, 21 + gd_sectors
    overhead = 128
    out = bytearray(overhead * SECTOR)
    out[0:SECTOR] = header(1, 3, gd, rgd, overhead, 1, 20, 0)
    out[SECTOR:21 * SECTOR] = descriptor(name, 'monolithicSparse')
    gdv = [0] * n_gdes
    rgdv = [0] * n_gdes
    tables = {}
    for n in sorted(grains):
        tables.setdefault(n // GTES, {})[n % GTES] = grains[n]
    for t, entries in sorted(tables.items()):
        gt = [0] * GTES
        for i, data in sorted(entries.items()):
            gt[i] = len(out) // SECTOR
            out += data
        gtb = struct.pack('<%dI' % GTES, *gt)
        gdv[t] = len(out) // SECTOR
        out += gtb
        rgdv[t] = len(out) // SECTOR
        out += gtb
    out[gd * SECTOR:gd * SECTOR + n_gdes * 4] = struct.pack('<%dI' % n_gdes, *gdv)
    out[rgd * SECTOR:rgd * SECTOR + n_gdes * 4] = struct.pack('<%dI' % n_gdes, *rgdv)
    return bytes(out), raw_of(grains)


def marker(val, typ):
    return struct.pack('<QII', val, 0, typ).ljust(SECTOR, b'\0')


def stream(name, footer=True):
    grains = pattern()
    n_gdes = CAP // (GRAIN * GTES)
    overhead = 128
    out = bytearray(overhead * SECTOR)
    out[0:SECTOR] = header(3, 0x30001, GD_AT_END, 0, overhead, 1, 20, 1)
    out[SECTOR:21 * SECTOR] = descriptor(name, 'streamOptimized')
    gdv = [0] * n_gdes
    tables = {}
    for n in sorted(grains):
        tables.setdefault(n // GTES, {})[n % GTES] = grains[n]
    for t, entries in sorted(tables.items()):
        gt = [0] * GTES
        for i, data in sorted(entries.items()):
            gt[i] = len(out) // SECTOR
            c = zlib.compress(data, 6)
            m = struct.pack('<QI', (t * GTES + i) * GRAIN, len(c)) + c
            out += m.ljust((len(m) + SECTOR - 1) // SECTOR * SECTOR, b'\0')
        if t == 0:   # vSphere's undocumented marker type 4, one sector long
            out += marker(1, 4) + b'\xaa' * SECTOR
        out += marker(4, 1)
        gdv[t] = len(out) // SECTOR
        out += struct.pack('<%dI' % GTES, *gt)
    if footer:
        gd_sectors = (n_gdes * 4 + SECTOR - 1) // SECTOR
        out += marker(gd_sectors, 2)
        gd = len(out) // SECTOR
        out += struct.pack('<%dI' % n_gdes, *gdv).ljust(gd_sectors * SECTOR, b'\0')
        out += marker(1, 3)
        out += header(3, 0x30001, gd, 0, overhead, 1, 20, 1)
        out += bytes(SECTOR)  # EOS
    return bytes(out), raw_of(grains)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    kind, d, name = sys.argv[1:]
    if kind == 'sparse-lazy':
        img, raw = sparse_lazy(name)
    elif kind == 'stream':
        img, raw = stream(name)
    elif kind == 'stream-nofooter':
        img, raw = stream(name, footer=False)
    else:
        sys.exit('unknown kind ' + kind)
    with open(os.path.join(d, name + '.vmdk'), 'wb') as f:
        f.write(img)
    with open(os.path.join(d, name + '.raw'), 'wb') as f:
        f.write(raw)


if __name__ == '__main__':
    main()
