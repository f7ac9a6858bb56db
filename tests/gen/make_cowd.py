#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build a small ESXi vmfsSparse ("COWD", NAME-delta.vmdk) image from the
format specification (VMDK-FORMAT.md section 1.6), with a known pattern.

Usage: make_cowd.py [--grain SECTORS] [--corrupt KIND] DIR NAME

Writes, in DIR:
  NAME.vmdk        the descriptor: createType="vmfsSparse", one extent line
                   RW <sectors> VMFSSPARSE "NAME-delta.vmdk", no parent
                   (parentCID=ffffffff, no parentFileNameHint)
  NAME-delta.vmdk  the COWD extent
  NAME.raw         the bytes the virtual disk must read as

Layout (all header fields uint32 little-endian, offsets in sectors):
  header (4 sectors): magic "COWD", version 1, flags 3, numSectors,
  grainSize, gdOffset 4, numGDEntries, freeSector; the grain directory
  (numGDEntries uint32 sector numbers of grain tables, 0 = none); then each
  grain table (4096 uint32 sector numbers of grains, 16 KiB) followed by its
  grains, which are stored in an order that differs from their disk order.
  freeSector is the end of the file.

The pattern: the capacity spans 4 grain tables (the last one partly); table
0 holds several grains (the first, a run, the last grain of the table),
table 1 does not exist (GD entry 0), table 2 holds one grain, table 3 holds
the very last grain of the disk.

--corrupt KIND makes a hostile variant (the .raw is then meaningless):
  magic        the magic number is wrong
  version      version 2
  grain        grain size 3 sectors (not a power of two)
  gdes-huge    numGDEntries 0xffffffff (the GD cannot fit in the file)
  gdes-short   numGDEntries 1 (cannot cover numSectors)
  gd-past-eof  gdOffset points past the end of the file
  gde-past-eof GD entry 2 points past the end of the file
  gte-past-eof entry 0 of table 2 points past the end of the file
  gte-header   entry 0 of table 0 points into the header (sector 1)
  size         the descriptor's extent size differs from numSectors
Standard library only.
"""
import argparse
import os
import random
import struct
import sys

SECTOR = 512
GTES = 4096
GT_SECTORS = GTES * 4 // SECTOR  # 32
HEADER_SECTORS = 4


def build(grain, corrupt):
    coverage = GTES * grain                 # sectors one table covers
    capacity = 3 * coverage + coverage // 2  # 3.5 tables
    n_gdes = -(-capacity // coverage)
    grains_total = capacity // grain
    gd_offset = HEADER_SECTORS
    gd_sectors = -(-n_gdes * 4 // SECTOR)
    rng = random.Random(grain * 7919 + 17)

    # grain numbers allocated, per table, in the order stored in the file
    per_table = {
        0: [0, 3, 1, 2, 100, 4095, 50],
        2: [2 * GTES + 7],
        3: [grains_total - 1],
    }
    gd = [0] * n_gdes
    gts = {t: [0] * GTES for t in per_table}
    data = {}
    chunks = []  # (sector, bytes)
    sector = gd_offset + gd_sectors
    for t in sorted(per_table):
        gd[t] = sector
        sector += GT_SECTORS
        for g in per_table[t]:
            payload = rng.randbytes(grain * SECTOR)
            # make every sector recognisable: its disk sector number
            payload = bytearray(payload)
            for k in range(grain):
                struct.pack_into("<Q", payload, k * SECTOR, g * grain + k)
            gts[t][g % GTES] = sector
            data[g] = bytes(payload)
            chunks.append((sector, bytes(payload)))
            sector += grain
    free_sector = sector

    flags, version, magic = 3, 1, b"COWD"
    num_gdes = n_gdes
    hdr_gd_offset = gd_offset
    hdr_grain = grain
    desc_sectors = capacity
    gd_written = list(gd)  # the tables stay where gd says
    if corrupt == "magic":
        magic = b"CXWD"
    elif corrupt == "version":
        version = 2
    elif corrupt == "grain":
        hdr_grain = 3
    elif corrupt == "gdes-huge":
        num_gdes = 0xFFFFFFFF
    elif corrupt == "gdes-short":
        num_gdes = 1
    elif corrupt == "gd-past-eof":
        hdr_gd_offset = free_sector + 100
    elif corrupt == "gde-past-eof":
        gd_written[2] = free_sector + 1000
    elif corrupt == "gte-past-eof":
        gts[2][7] = free_sector + 5000
    elif corrupt == "gte-header":
        gts[0][0] = 1
    elif corrupt == "size":
        desc_sectors = capacity - grain
    elif corrupt:
        sys.exit("make_cowd.py: unknown --corrupt kind %r" % corrupt)

    hdr = bytearray(HEADER_SECTORS * SECTOR)
    hdr[0:4] = magic
    struct.pack_into("<7I", hdr, 4, version, flags, capacity,
                     hdr_grain,
                     hdr_gd_offset, num_gdes, free_sector)
    struct.pack_into("<3I", hdr, 32, 0, 0, 0)   # root: cylinders etc. unused
    struct.pack_into("<I", hdr, 1060, 1)        # generation
    hdr[1064:1064 + 8] = b"vmdkit\0\0"          # name
    struct.pack_into("<I", hdr, 1636, 1)        # savedGeneration
    struct.pack_into("<I", hdr, 1648, 0)        # uncleanShutdown

    image = bytearray(free_sector * SECTOR)
    image[0:len(hdr)] = hdr
    gd_bytes = struct.pack("<%dI" % n_gdes, *gd_written)
    image[gd_offset * SECTOR:gd_offset * SECTOR + len(gd_bytes)] = gd_bytes
    for t in per_table:
        raw = struct.pack("<%dI" % GTES, *gts[t])
        image[gd[t] * SECTOR:gd[t] * SECTOR + len(raw)] = raw
    for s, payload in chunks:
        image[s * SECTOR:s * SECTOR + len(payload)] = payload

    raw = bytearray(capacity * SECTOR)
    for g, payload in data.items():
        raw[g * grain * SECTOR:(g + 1) * grain * SECTOR] = payload
    return bytes(image), bytes(raw), desc_sectors


def descriptor(name, sectors, create_type, ext_type, ext_file):
    return ("# Disk DescriptorFile\n"
            "version=1\n"
            "CID=5a3c1e01\n"
            "parentCID=ffffffff\n"
            "createType=\"%s\"\n"
            "\n"
            "# Extent description\n"
            "RW %d %s \"%s\"\n"
            "\n"
            "# The Disk Data Base\n"
            "#DDB\n"
            "\n"
            "ddb.adapterType = \"lsilogic\"\n"
            "ddb.virtualHWVersion = \"4\"\n"
            "ddb.uuid = \"60 00 c2 9a 0b 4e 31 f2-6d 55 a4 c8 97 0e 3b 12\"\n"
            % (create_type, sectors, ext_type, ext_file))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grain", type=int, default=1,
                    help="grain size in sectors (default 1, as ESXi)")
    ap.add_argument("--corrupt", default="")
    ap.add_argument("dir")
    ap.add_argument("name")
    a = ap.parse_args()
    image, raw, sectors = build(a.grain, a.corrupt)
    ext = a.name + "-delta.vmdk"
    with open(os.path.join(a.dir, ext), "wb") as f:
        f.write(image)
    with open(os.path.join(a.dir, a.name + ".raw"), "wb") as f:
        f.write(raw)
    with open(os.path.join(a.dir, a.name + ".vmdk"), "w") as f:
        f.write(descriptor(a.name, sectors, "vmfsSparse", "VMFSSPARSE", ext))


if __name__ == "__main__":
    main()
