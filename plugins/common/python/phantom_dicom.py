"""Reads the DICOM files aihub-phantom writes (Explicit VR Little Endian, one 16-bit grey frame) for the reference
models' training and benchmark scripts, with numpy alone (Debian's python3-numpy; no pydicom needed). Not a general
DICOM reader: sequences are skipped, compressed or multi-frame pixel data is not handled.
"""
import struct

import numpy as np

_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"}


def read(path):
    """(modality values float32 [rows, cols] (rescale applied), tags {tag: raw value bytes}) of one file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path}: not a DICOM Part 10 file")
    pos = 132
    tags = {}
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            pos += 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            pos += 8
        if length == 0xFFFFFFFF:  # undefined-length sequence: skip to its delimiter
            end = data.find(b"\xfe\xff\xdd\xe0", pos)
            if end < 0:
                raise ValueError(f"{path}: unterminated sequence")
            pos = end + 8
            continue
        tags[(group << 16) | element] = data[pos:pos + length]
        pos += length

    def us(tag):
        return struct.unpack("<H", tags[tag][:2])[0]

    rows, cols = us(0x00280010), us(0x00280011)
    signed = us(0x00280103) == 1
    raw = np.frombuffer(tags[0x7FE00010], dtype="<i2" if signed else "<u2", count=rows * cols)
    pixels = raw.astype(np.float32).reshape(rows, cols) * np.float32(ds(tags, 0x00281053, 1.0)) + \
        np.float32(ds(tags, 0x00281052, 0.0))
    return pixels, tags


def ds(tags, tag, default=None, index=0):
    """Value `index` of a decimal-string (DS/IS) attribute as float, `default` when the attribute is absent."""
    if tag not in tags:
        return default
    return float(tags[tag].decode("ascii").strip("\0 ").split("\\")[index])
