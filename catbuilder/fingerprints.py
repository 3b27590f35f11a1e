"""Input-file fingerprints that do not read every byte.

A pipeline run remembers a fingerprint of each input file (tiles, source and
label tables) to tell, on the next run, whether a step's inputs changed.
Hashing every byte costs a survey's whole volume on the first run (10⁴ tiles
of 10,000² px x 3 bands is ~12 TB), so by default (``auto``):

- a FITS file whose every HDU carries the ``DATASUM`` keyword (the FITS
  checksum convention, written by most survey pipelines and by astropy's
  ``checksum=True``) is fingerprinted by its size, its modification time and
  those keywords (``CHECKSUM`` too where present): only the headers are read;
- any other file by its size, its modification time and a BLAKE2b hash of
  16 blocks of 64 KiB spread over it (the first and last included): at most
  1 MiB read, whatever its size.

The modification time is part of both: an edit by a tool that leaves a
stale ``DATASUM``, or that misses the sampled blocks, still reruns what
depends on the file; a copy that keeps times (``cp -p``, ``rsync -t``) does
not. ``sha256`` hashes every byte (content only), for inputs whose times
cannot be trusted. The choice is ``pipeline.input-fingerprint``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["METHODS", "file_fingerprint"]

METHODS = ("auto", "sampled", "sha256")
BLOCKS = 16
BLOCK_BYTES = 1 << 16
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fz", ".fits.gz")


def _sampled(path: Path) -> str:
    st = path.stat()
    h = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=20)
    with open(path, "rb") as f:
        if st.st_size <= BLOCKS * BLOCK_BYTES:
            h.update(f.read())
        else:
            last = st.st_size - BLOCK_BYTES
            for i in range(BLOCKS):
                f.seek(last * i // (BLOCKS - 1))
                h.update(f.read(BLOCK_BYTES))
    return "sampled:" + h.hexdigest()


def _fits_checksums(path: Path) -> str | None:
    """``fits:<hash>`` of the size and every HDU's DATASUM (and CHECKSUM); None when
    the file is no FITS or an HDU lacks DATASUM."""
    if not path.name.lower().endswith(_FITS_SUFFIXES) or path.name.lower().endswith(".gz"):
        return None
    from astropy.io import fits

    sums = []
    try:
        with fits.open(path, lazy_load_hdus=True, checksum=False, memmap=False) as hdul:
            for hdu in hdul:  # each header is read; the data are skipped
                header = hdu.header
                if "DATASUM" not in header:
                    return None
                sums.append((str(header["DATASUM"]), str(header.get("CHECKSUM", ""))))
    except (OSError, ValueError):
        return None
    if not sums:
        return None
    st = path.stat()
    h = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}:{sums}".encode(), digest_size=20)
    return "fits:" + h.hexdigest()


def file_fingerprint(path: str | os.PathLike[str], method: str = "auto") -> str:
    """A fingerprint of the file at ``path`` that changes when its content does.

    Parameters
    ----------
    path
        The file.
    method
        ``"auto"`` (size, modification time and the FITS checksum keywords
        where every HDU has them, else sampled), ``"sampled"`` (size,
        modification time and 16 blocks of 64 KiB) or ``"sha256"`` (every
        byte).

    Returns
    -------
    str
        ``"<method>:<hex digest>"`` (method ``fits``, ``sampled`` or ``sha256``).

    Raises
    ------
    ValueError
        For an unknown method.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from catbuilder.fingerprints import file_fingerprint
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = p.write_text("galaxies")
    >>> file_fingerprint(p, "sha256")[:15]
    'sha256:ed49013c'
    """
    path = Path(path)
    if method not in METHODS:
        raise ValueError(
            f"unknown input fingerprint {method!r}; one of {', '.join(METHODS)} "
            "(pipeline.input-fingerprint)"
        )
    if method == "sha256":
        from catbuilder.outputs import file_sha256

        return "sha256:" + file_sha256(path)
    if method == "auto":
        fits_sums = _fits_checksums(path)
        if fits_sums is not None:
            return fits_sums
    return _sampled(path)
