"""MNIST-style IDX files checked before torchvision reads them, so a missing, truncated or corrupted
file ends in a message that names it and says what to do, not in a numpy reshape error.

torchvision's `resources` MD5 sums are those of the .gz archives, and torchvision reads only the
uncompressed files; re-packaged archives (Debian's dataset-fashion-mnist recompresses them) have other
sums with identical contents. So the check is on the uncompressed files, against the official sums
below (the same values torchvision's older `raw_data` tables and the data sets' own pages list).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

from fa_bench.data.errors import DataCorruptError, DataFileNotFoundError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OFFICIAL_COUNT = {"train": 60000, "t10k": 10000}
OFFICIAL_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def raw_folder(cls, root: str) -> Path:
    """Where torchvision's MNIST-like class `cls` reads: <root>/<class name>/raw."""
    return Path(root) / cls.__name__ / "raw"


def prepare(cls, root: str, download: bool) -> Path:
    """Make <root>/<cls>/raw hold the four checked IDX files: extract any .gz lying there, download
    what is still missing when allowed, then check every file. Returns the raw folder."""
    raw = raw_folder(cls, root)
    _extract_archives(raw)
    download_error = None
    if _missing(raw) and download:
        try:
            cls(root, train=True, download=True)
        except Exception as err:  # noqa: BLE001 -- any download failure becomes the missing-data message below
            download_error = err
        _extract_archives(raw)
    missing = _missing(raw)
    if missing:
        raise DataFileNotFoundError(missing_message(cls, root, raw, missing, download, download_error))
    counts = {name: check_file(cls.__name__, raw / name) for name in FILES}
    for split in OFFICIAL_COUNT:
        n_img, n_lab = counts[f"{split}-images-idx3-ubyte"], counts[f"{split}-labels-idx1-ubyte"]
        if n_img != n_lab:
            raise DataCorruptError(
                f"{cls.__name__}: {raw / f'{split}-images-idx3-ubyte'} holds {n_img} images but "
                f"{raw / f'{split}-labels-idx1-ubyte'} holds {n_lab} labels; they must come from the same "
                f"release. Delete both and download them again.")
    return raw


def _missing(raw: Path) -> list[str]:
    return [name for name in FILES if not (raw / name).is_file()]


def _extract_archives(raw: Path):
    """name.gz -> name beside it, for every file still missing (downloads and Debian's package ship
    .gz only). Written to a temporary name first, so an interrupted extraction leaves no half file."""
    for name in _missing(raw):
        archive = raw / f"{name}.gz"
        if not archive.is_file():
            continue
        tmp = raw / f".{name}.partial"
        try:
            with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, PermissionError):
                raise DataFileNotFoundError(
                    f"cannot extract {archive.resolve()} into {raw.resolve()}: the folder is not writable "
                    f"({err}). Run `gunzip -k` on the .gz files in a folder you can write to, or copy them "
                    f"there, and point FA_DATA (or data.root=) at its parent of <name>/raw.") from err
            raise DataCorruptError(
                f"{archive.resolve()} is not a readable gzip archive ({err}): it is truncated or corrupted. "
                f"Delete it and download it again.") from err
        os.replace(tmp, raw / name)


def check_file(dataset: str, path: Path) -> int:
    """Header against size, then (for a file claiming the official count) MD5. Returns the item count.

    A file with a consistent header and another count (a subset, the test suite's tiny files) is
    accepted: only official-size files have a known sum.
    """
    is_images = "images" in path.name
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(16 if is_images else 8)
    ndim = 3 if is_images else 1
    redownload = "Delete it and download it again (or restore it from a good copy)."
    if len(header) < 4 + 4 * ndim or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
        raise DataCorruptError(
            f"{dataset}: {path.resolve()} is not an uncompressed IDX {'image' if is_images else 'label'} "
            f"file (expected magic bytes 00 00 08 0{ndim}, found {header[:4].hex(' ') or 'nothing'}, "
            f"{size} bytes). {redownload}")
    dims = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if is_images and dims[1:] != [28, 28]:
        raise DataCorruptError(f"{dataset}: {path.resolve()} holds {dims[1]}x{dims[2]} images, expected "
                               f"28x28. {redownload}")
    expected = 4 + 4 * ndim + dims[0] * (784 if is_images else 1)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise DataCorruptError(
            f"{dataset}: {path.resolve()} is {state}: its header announces {dims[0]} items, so "
            f"{expected} bytes, but the file has {size} bytes. {redownload}")
    official = OFFICIAL_COUNT[path.name.split("-")[0]]
    if dims[0] == official:
        want = OFFICIAL_MD5[dataset][path.name]
        found = _md5(path)
        if found != want:
            raise DataCorruptError(
                f"{dataset}: {path.resolve()} claims the official {official} items but its MD5 is {found}, "
                f"expected {want}: the file is corrupted or from another data set. {redownload}")
    return dims[0]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_message(cls, root: str, raw: Path, missing: list[str], download: bool, download_error) -> str:
    name = cls.__name__
    source = cls.mirrors[0]
    files = ", ".join(f"{m}.gz" for m in missing)
    msg = (f"{name} not found: looked in {raw.resolve()} (data root {Path(root).resolve()}) and missing "
           f"{', '.join(missing)}. Set FA_DATA (or pass data.root=...) to the folder that holds {name}/raw/, "
           f"or put the files there: download {files} from {source} into {raw.resolve()} (the .gz files are "
           f"extracted on first load)")
    if name == "FashionMNIST":
        installed = " (installed on this machine)" if Path(DEBIAN_FASHION).is_dir() else ""
        msg += (f"; on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` puts the four .gz files in "
                f"{DEBIAN_FASHION}/{installed}: link them with `mkdir -p {raw.resolve()} && ln -s "
                f"{DEBIAN_FASHION}/*.gz {raw.resolve()}/`")
    if download_error is not None:
        msg += f". The download failed: {download_error}"
    elif not download:
        msg += ", or allow the download (dataset.download=true) on a machine with network access"
    return msg + "."
