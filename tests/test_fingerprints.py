"""Input fingerprints that read a tile's headers or a few blocks, not every byte."""

import os
import shutil

import numpy as np
import psutil
import pytest

from catbuilder import config
from catbuilder.fingerprints import file_fingerprint
from catbuilder.outputs import file_sha256
from catbuilder.pipeline.manifest import Manifest


def _read_while(fn):
    """The bytes this process read (read syscalls) while ``fn`` ran, and its result."""
    io = psutil.Process().io_counters
    before = io().read_chars
    out = fn()
    return io().read_chars - before, out


def _fits(path, data, checksum):
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path, checksum=checksum, overwrite=True)
    return path


def test_a_fits_tile_with_checksums_is_known_by_its_headers(tmp_path):
    data = np.random.default_rng(0).normal(size=(2000, 2000)).astype(np.float32)  # 16 MB
    tile = _fits(tmp_path / "t.fits", data, checksum=True)
    read, fp = _read_while(lambda: file_fingerprint(tile))
    assert fp.startswith("fits:") and read < 100_000, read
    copy = tmp_path / "copy.fits"
    shutil.copy2(tile, copy)  # same content and times (cp -p): the same input
    assert file_fingerprint(copy) == fp
    st = tile.stat()
    data[1000, 1000] += 1.0  # one pixel in the middle, rewritten with its checksums
    _fits(tile, data, checksum=True)
    os.utime(tile, ns=(st.st_atime_ns, st.st_mtime_ns))  # even at the old time
    assert file_fingerprint(tile) != fp


def test_other_files_are_sampled_and_sha256_reads_everything(tmp_path):
    big = tmp_path / "sources.bin"
    big.write_bytes(np.random.default_rng(1).bytes(20_000_000))
    read, fp = _read_while(lambda: file_fingerprint(big))
    assert fp.startswith("sampled:") and read <= 16 * 65536 + 4096, read
    raw = _fits(tmp_path / "raw.fits", np.zeros((1000, 1000), np.float32), checksum=False)
    assert file_fingerprint(raw).startswith("sampled:")  # no DATASUM: sampled
    st = big.stat()
    with open(big, "r+b") as f:  # a byte of the first block, same size and mtime restored
        f.write(b"\x00\x01")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = file_fingerprint(big)
    assert edited != fp
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: changed, to be safe
    assert file_fingerprint(big) != edited
    read, full = _read_while(lambda: file_fingerprint(big, "sha256"))
    assert full == "sha256:" + file_sha256(big) and read >= 20_000_000
    with pytest.raises(ValueError, match="unknown input fingerprint 'md5'; one of auto"):
        file_fingerprint(big, "md5")


def test_the_manifest_reuses_records_and_keeps_those_of_full_hashes(tmp_path):
    f = tmp_path / "labels.parquet"
    f.write_bytes(b"x" * 1000)
    m = Manifest(tmp_path / "manifest.json")
    rec = m.checksum(f)
    assert rec["method"] == "auto" and rec["fingerprint"].startswith("sampled:")
    with config.set({"pipeline.input-fingerprint": "sha256"}):
        assert m.checksum(f)["fingerprint"] == "sha256:" + file_sha256(f)
    st = f.stat()  # a record from a run that hashed every byte stays what it was
    m.data["checksums"][str(f.resolve())] = {
        "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": "ab" * 32
    }  # fmt: skip
    assert m.checksum(f)["fingerprint"] == "ab" * 32
