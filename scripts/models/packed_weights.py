"""Lossless packing of a model file whose bulk is float32 weights, so that a shipped model
stays a small tracked file (under 5 MB) and is unpacked by scripts/fetch-test-data.sh.

Float32 weights hardly compress as they are (xz: 8 %); split into four byte planes (every
word's first bytes, then its second bytes, ...) the sign/exponent planes compress well, and
xz takes the whole file 16 % down. The packed file is a header line with the original's
SHA-256, then the xz stream of the planes; unpacking checks the hash and writes the file
whole (a temporary name, then a rename) or not at all.

    python3 scripts/models/packed_weights.py pack   model.pt model.pt.packed
    python3 scripts/models/packed_weights.py unpack model.pt.packed model.pt
"""
import hashlib
import lzma
import os
import sys

MAGIC = b"aiaa-packed-weights-v1 sha256="
WORD = 4


def pack(data: bytes) -> bytes:
    planes = b"".join(data[i::WORD] for i in range(WORD))
    digest = hashlib.sha256(data).hexdigest().encode()
    return MAGIC + digest + b"\n" + lzma.compress(planes, preset=9 | lzma.PRESET_EXTREME)


def unpack(packed: bytes, name: str) -> bytes:
    header, sep, stream = packed.partition(b"\n")
    if not sep or not header.startswith(MAGIC):
        raise SystemExit(f"{name}: not a packed weights file (no {MAGIC.decode()!r} header)")
    planes = lzma.decompress(stream)
    n = len(planes)
    data = bytearray(n)
    start = 0
    for i in range(WORD):
        # Plane i holds bytes i, i + 4, ...: ceil((n - i) / 4) of them.
        count = (n - i + WORD - 1) // WORD
        data[i::WORD] = planes[start : start + count]
        start += count
    if hashlib.sha256(data).hexdigest().encode() != header[len(MAGIC) :]:
        raise SystemExit(f"{name}: the unpacked bytes do not match the SHA-256 in its header")
    return bytes(data)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        raise SystemExit("usage: packed_weights.py pack|unpack SRC DST")
    mode, src, dst = sys.argv[1:]
    with open(src, "rb") as f:
        data = f.read()
    out = pack(data) if mode == "pack" else unpack(data, src)
    tmp = f"{dst}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
