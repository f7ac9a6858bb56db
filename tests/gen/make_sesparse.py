#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build a small ESXi seSparse image (NAME-sesparse.vmdk) from the format
as documented in VMDK-FORMAT.md section 1.7 and QEMU's reader, with a known
pattern.

Usage: make_sesparse.py [--corrupt KIND] DIR NAME

Writes, in DIR:
  NAME.vmdk           the descriptor: createType="seSparse", one extent line
                      RW <sectors> SESPARSE "NAME-sesparse.vmdk", no parent
  NAME-sesparse.vmdk  the seSparse extent
  NAME.raw            the bytes the virtual disk must read as

Layout (every field uint64 little-endian; offsets and sizes in sectors):
  sector 0   constant header: magic 0xCAFEBABE, version 0x0000000200000001,
             capacity, grain size 8, grain table size 64, flags 0, four
             reserved 0, then (offset, size) of the volatile header, journal
             header, journal, grain directory, grain tables, free bitmap,
             backmap, grains; zero padding
  sector 1   volatile header: magic 0xCAFECAFE, free GT number, next
             transaction number, replay_journal 0; zero padding
  then the journal header and journal (zeros), the GD (entry 0 = no table,
  else 0x10000000 << 32 | table index), the grain tables (4096 entries,
  64 sectors each), the free bitmap and backmap (zeros), the grains (4 KiB
  each, by index).  A grain table entry's top nibble is its type: 0
  unallocated (whole entry 0), 1 unmapped, 2 zero, 3 allocated with the
  grain index's low 12 bits in bits 48..59 and the rest in bits 0..47.

The pattern: a 40 MiB disk, three GD entries (16 MiB each, the last one
half used).  GD entry 0 uses grain table 1, entry 1 has no table, entry 2
uses grain table 0 (tables are addressed by index, not in order).  Table 1
holds allocated grains (one with index 4100, which needs both halves of the
encoding), an unmapped entry and a zero entry; table 2 the first and the
last grain of the disk.

--corrupt KIND makes a hostile variant (the .raw is then meaningless):
  magic        constant header magic wrong
  version      version 0x0000000200000002
  grain        grain size 16 sectors
  volatile     volatile header magic wrong
  replay       replay_journal set
  gd-past-eof  the GD offset points past the end of the file
  gde-bad      GD entry 0 has 0x20000000 in its top 32 bits
  gde-range    GD entry 2 names table 7 (the area holds 3)
  gte-past-eof entry 0 of table 2 names grain 999999
  gte-type     entry 3 of table 0 has type 5
  size         the descriptor's extent size differs from the capacity
Standard library only.
"""
import argparse
import os
import random
import struct
import sys

SECTOR = 512
GRAIN = 8                 # sectors
GT_SECTORS = 64
GTES = GT_SECTORS * SECTOR // 8
COVER = GTES * GRAIN      # sectors per GD entry (16 MiB)


def gte_allocated(idx):
    return (3 << 60) | ((idx & 0xFFF) << 48) | (idx >> 12)


def build(corrupt):
    capacity = 40 * 1024 * 1024 // SECTOR
    n_gdes = -(-capacity // COVER)
    rng = random.Random(4242)

    vol_off, jh_off, j_off, j_size = 1, 2, 3, 8
    gd_off = j_off + j_size
    gd_size = -(-n_gdes * 8 // SECTOR)
    gts_off = gd_off + gd_size
    n_tables = 3
    gts_size = n_tables * GT_SECTORS
    fb_off = gts_off + gts_size
    bm_off = fb_off + 1
    grains_off = -(-(bm_off + 1) // GRAIN) * GRAIN
    n_grains = 4101
    grains_size = n_grains * GRAIN

    gd = [0] * n_gdes
    tables = {t: [0] * GTES for t in range(n_tables)}
    gd[0] = (0x10000000 << 32) | 1
    gd[2] = (0x10000000 << 32) | 0
    # (gd entry, entry in table) -> grain index, or 'unmapped' / 'zero'
    layout = {
        (0, 0): 0, (0, 1): "unmapped", (0, 2): "zero", (0, 3): 4100,
        (0, 10): 1, (0, 4095): 2,
        (2, 0): 3, (2, (capacity - 2 * COVER) // GRAIN - 1): 4,
    }
    grains = {}   # grain index -> payload
    raw = bytearray(capacity * SECTOR)
    for (gdi, i), what in layout.items():
        t = gd[gdi] & 0xFFFFFFFF
        if what == "unmapped":
            tables[t][i] = 1 << 60
        elif what == "zero":
            tables[t][i] = 2 << 60
        else:
            disk_sector = (gdi * GTES + i) * GRAIN
            payload = bytearray(rng.randbytes(GRAIN * SECTOR))
            for k in range(GRAIN):
                struct.pack_into("<Q", payload, k * SECTOR, disk_sector + k)
            grains[what] = bytes(payload)
            tables[t][i] = gte_allocated(what)
            raw[disk_sector * SECTOR:(disk_sector + GRAIN) * SECTOR] = payload

    version, magic, grain_hdr, vol_magic, replay = \
        0x0000000200000001, 0xCAFEBABE, GRAIN, 0xCAFECAFE, 0
    hdr_gd_off = gd_off
    desc_sectors = capacity
    if corrupt == "magic":
        magic = 0xCAFEBABF
    elif corrupt == "version":
        version = 0x0000000200000002
    elif corrupt == "grain":
        grain_hdr = 16
    elif corrupt == "volatile":
        vol_magic = 0xCAFECAFF
    elif corrupt == "replay":
        replay = 1
    elif corrupt == "gd-past-eof":
        hdr_gd_off = grains_off + grains_size + 10
    elif corrupt == "gde-bad":
        gd[0] = (0x20000000 << 32) | 1
    elif corrupt == "gde-range":
        gd[2] = (0x10000000 << 32) | 7
    elif corrupt == "gte-past-eof":
        tables[0][0] = gte_allocated(999999)
    elif corrupt == "gte-type":
        tables[1][3] = (5 << 60) | 1
    elif corrupt == "size":
        desc_sectors = capacity - GRAIN
    elif corrupt:
        sys.exit("make_sesparse.py: unknown --corrupt kind %r" % corrupt)

    size = (grains_off + grains_size) * SECTOR
    image = bytearray(size)
    struct.pack_into("<10Q", image, 0, magic, version, capacity, grain_hdr,
                     GT_SECTORS, 0, 0, 0, 0, 0)
    struct.pack_into("<16Q", image, 80,
                     vol_off, 1, jh_off, 1, j_off, j_size, hdr_gd_off, gd_size,
                     gts_off, gts_size, fb_off, 1, bm_off, 1,
                     grains_off, grains_size)
    struct.pack_into("<4Q", image, vol_off * SECTOR, vol_magic, n_tables, 1,
                     replay)
    struct.pack_into("<%dQ" % n_gdes, image, gd_off * SECTOR, *gd)
    for t, entries in tables.items():
        struct.pack_into("<%dQ" % GTES, image,
                         (gts_off + t * GT_SECTORS) * SECTOR, *entries)
    for idx, payload in grains.items():
        off = (grains_off + idx * GRAIN) * SECTOR
        image[off:off + len(payload)] = payload
    return bytes(image), bytes(raw), desc_sectors


def descriptor(sectors, ext_file):
    return ("# Disk DescriptorFile\n"
            "version=1\n"
            "CID=5a3c1e02\n"
            "parentCID=ffffffff\n"
            "createType=\"seSparse\"\n"
            "\n"
            "# Extent description\n"
            "RW %d SESPARSE \"%s\"\n"
            "\n"
            "# The Disk Data Base\n"
            "#DDB\n"
            "\n"
            "ddb.adapterType = \"lsilogic\"\n"
            "ddb.virtualHWVersion = \"13\"\n"
            % (sectors, ext_file))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corrupt", default="")
    ap.add_argument("dir")
    ap.add_argument("name")
    a = ap.parse_args()
    image, raw, sectors = build(a.corrupt)
    ext = a.name + "-sesparse.vmdk"
    with open(os.path.join(a.dir, ext), "wb") as f:
        # sparse on the host: most of the grains area is never written
        pos = 0
        while pos < len(image):
            chunk = image[pos:pos + 65536]
            if chunk.count(0) == len(chunk):
                f.seek(len(chunk), 1)
            else:
                f.write(chunk)
            pos += len(chunk)
        f.truncate(len(image))
    with open(os.path.join(a.dir, a.name + ".raw"), "wb") as f:
        f.write(raw)
    with open(os.path.join(a.dir, a.name + ".vmdk"), "w") as f:
        f.write(descriptor(sectors, ext))


if __name__ == "__main__":
    main()
