"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything is first written to a temporary file in the destination's own folder (same file system),
then moved over the destination with ``os.replace`` (atomic on POSIX and Windows). If writing fails,
the temporary file is removed and the destination is left as it was.

    from fa_bench import atomic
    atomic.write_text(path, text)              # str  -> path
    atomic.write_bytes(path, data)             # bytes -> path
    atomic.write_json(path, obj, indent=2)     # json.dumps(obj, **kwargs) + "\\n" -> path
    atomic.to_csv(df, path, index=False, ...)  # DataFrame.to_csv's keywords
    atomic.savefig(fig, path, dpi=150)         # Figure.savefig's keywords; format from path's suffix
    atomic.copyfile(src, dst)
    with atomic.atomic_path(path) as tmp:      # anything else: write ``tmp`` (a Path), it replaces
        writer(tmp)                            # ``path`` when the block ends without an exception

The temporary name is ``.<name>.tmp-<random><suffix>``: hidden, unique per writer, and ending in the
destination's suffix (``.fig2.png.tmp-1a2b3c4d.png``), so tools that infer a format from the suffix
still see it, while ``glob('*/runs.csv')`` or ``rglob('summary.json')`` never match a half-written file.
New files get the usual permissions (0o666 minus the umask), as ``open(path, 'w')`` would give.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "to_csv", "savefig", "copyfile"]


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, else it is removed.
    The block must create the file (it does not exist when the block starts)."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def write_json(path: Path | str, obj, **kwargs) -> Path:
    """``json.dumps(obj, **kwargs)`` plus a final newline."""
    return write_text(path, json.dumps(obj, **kwargs) + "\n")


def to_csv(df, path: Path | str, **kwargs) -> Path:
    """``df.to_csv(path, **kwargs)``, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def savefig(fig, path: Path | str, **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)``, atomically; the format is the path's suffix unless given."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def copyfile(src: Path | str, dst: Path | str) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
