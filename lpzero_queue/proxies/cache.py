"""Byte-bounded LRU cache of proxy inputs, with optional spill to disk.

Evaluating any number of expressions on an architecture never re-runs its model while its inputs
are cached (docs/method.md section 2: the main performance lever). Entries are kept in RAM in least
recently used order up to ``max_bytes``; with a ``spill_dir``, evicted entries are written to
``<spill_dir>/<key.digest>.pt`` (``torch.save`` of plain tensors, written to a temporary file and
renamed atomically) and later read back with ``torch.load(..., weights_only=True)`` instead of
being recomputed.

One process, one thread: no locking. Every operation leaves the cache consistent when it raises
(a failing compute inserts and evicts nothing). Spilling is an optimisation, never a failure: a
spill that cannot be written (disk full, I/O error) is counted and the entry is simply dropped
(recomputed when needed again). The spill directory is bounded: after each write the oldest spill
files are deleted until the directory holds at most ``spill_max_bytes``, and nothing is written
when the disk would be left with less than ``MIN_FREE_DISK`` bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from lpzero_queue.proxies.inputs import STORAGE_DTYPES, InputsKey, ProxyInputs

__all__ = ["CacheStats", "InputCache"]

SPILL_FORMAT: Final = 1  # bump when the spill file layout changes (old files are then recomputed)
MIN_FREE_DISK: Final = 2 * 2**30  # never fill the disk with spill files
DEFAULT_SPILL_FACTOR: Final = 4  # default spill budget: this many times the RAM budget
# Branch memos kept (architectures); each holds at most _engine.MEMO_MAX_BRANCHES small vectors.
MEMO_ARCHS: Final = 512

_log = logging.getLogger(__name__)
_warned: set[str] = set()  # kinds of spill failure already reported by this process


class DiskLowError(OSError):
    """Writing a spill would leave less than ``MIN_FREE_DISK`` free."""

    def __init__(self, directory: Path, free: int) -> None:
        super().__init__(
            f"{free / 2**30:.1f} GiB free on {directory}, below the "
            f"{MIN_FREE_DISK / 2**30:.0f} GiB the input cache leaves free"
        )


def _warn_once(exc: Exception) -> None:
    """Say why spills are not written once per process and kind, not once per spill."""
    kind = type(exc).__name__ + str(getattr(exc, "errno", ""))
    if kind in _warned:
        return
    _warned.add(kind)
    _log.warning(
        "input cache: evicted inputs are not spilled to disk (%s); they are dropped and "
        "recomputed when needed (said once)",
        exc,
    )


@dataclass(frozen=True)
class CacheStats:
    """Counters and occupancy of an :class:`InputCache`."""

    hits: int  # served from RAM
    misses: int  # successful lookups not in RAM (then loaded from disk or computed)
    computes: int  # compute() calls that returned
    disk_loads: int  # misses served from a spill file
    evictions: int  # entries dropped from RAM (spilled first when spill_dir is set)
    bytes_in_ram: int
    entries: int  # entries in RAM
    failed_computes: int = 0  # compute() calls that raised (the cache is left unchanged)
    failed_spills: int = 0  # spills not written (disk full, I/O error): the entry was dropped


class InputCache:
    """LRU cache of :class:`ProxyInputs` bounded by the bytes of their tensors.

    Args:
        max_bytes: RAM budget for cached tensors. An entry larger than the whole budget is
            returned (and spilled, when a spill directory is set) but not kept in RAM.
        spill_dir: Directory for evicted entries, or None to drop them.
        dtype: Storage dtype; entries computed in another dtype are cast on insertion.
        spill_max_bytes: Disk budget of the spill directory (oldest files are deleted beyond
            it); None: ``DEFAULT_SPILL_FACTOR`` times ``max_bytes`` (at least 1 GiB).
    """

    def __init__(
        self,
        max_bytes: int,
        spill_dir: Path | None = None,
        dtype: torch.dtype = torch.float32,
        spill_max_bytes: int | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {STORAGE_DTYPES}, got {dtype}")
        self.max_bytes = max_bytes
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.dtype = dtype
        self.spill_max_bytes = (
            max(DEFAULT_SPILL_FACTOR * max_bytes, 2**30)
            if spill_max_bytes is None
            else spill_max_bytes
        )
        self._entries: OrderedDict[str, ProxyInputs] = OrderedDict()  # oldest first
        self._bytes = 0
        self._on_disk: set[str] = set()  # digests written or read by this cache
        self._memos: OrderedDict[str, dict[Any, Any]] = OrderedDict()  # branch memos, LRU
        self._counts = dict.fromkeys(
            (
                "hits",
                "misses",
                "computes",
                "disk_loads",
                "evictions",
                "failed_computes",
                "failed_spills",
            ),
            0,
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: InputsKey) -> bool:
        """True when the key is in RAM (spill files are not consulted)."""
        return key.digest in self._entries

    def keys(self) -> list[InputsKey]:
        """Keys in RAM, least recently used first."""
        return [entry.key for entry in self._entries.values()]

    def stats(self) -> CacheStats:
        """Current counters and occupancy."""
        return CacheStats(**self._counts, bytes_in_ram=self._bytes, entries=len(self._entries))

    def get_or_compute(self, key: InputsKey, compute: Callable[[], ProxyInputs]) -> ProxyInputs:
        """Return the inputs for ``key``: from RAM, from a spill file, or by calling ``compute``.

        Args:
            key: Identity of the inputs.
            compute: Called (without arguments) only when neither RAM nor disk has the key; must
                return inputs whose ``key`` equals ``key``.

        Returns:
            The cached inputs (tensors in the cache's dtype). Do not modify them in place.

        Raises:
            ValueError: ``compute`` returned inputs for another key.
            Exception: Whatever ``compute`` or a spill write raises; the cache is then unchanged.
        """
        digest = key.digest
        entry = self._entries.get(digest)
        if entry is not None:
            self._entries.move_to_end(digest)
            self._counts["hits"] += 1
            return entry
        entry = self._load(key)
        from_disk = entry is not None
        if entry is None:
            try:
                entry = compute()
            except Exception:
                self._counts["failed_computes"] += 1
                raise
            if entry.key != key:
                self._counts["failed_computes"] += 1
                raise ValueError(f"compute returned inputs for {entry.key}, expected {key}")
            entry = self._cast(entry)
        self._insert(digest, entry)
        self._counts["misses"] += 1
        self._counts["disk_loads" if from_disk else "computes"] += 1
        return entry

    def memo(self, key: InputsKey) -> dict[Any, Any]:
        """The branch memo of ``key``'s inputs (see ``proxies._engine``), created on first use.

        Memos are small (one float64 per tensor per branch) and outlive their entry's eviction:
        a memoised branch needs no inputs. The ``MEMO_ARCHS`` most recently used are kept.
        """
        digest = key.digest
        memo = self._memos.get(digest)
        if memo is None:
            memo = self._memos[digest] = {}
            while len(self._memos) > MEMO_ARCHS:
                self._memos.popitem(last=False)
        self._memos.move_to_end(digest)
        return memo

    def clear(self) -> None:
        """Drop every entry and memo from RAM (spill files stay); counters are kept."""
        self._entries.clear()
        self._memos.clear()
        self._bytes = 0

    # -- internals ------------------------------------------------------------------------------

    def _cast(self, entry: ProxyInputs) -> ProxyInputs:
        if all(t.dtype == self.dtype for ts in entry.tensors.values() for t in ts):
            return entry
        tensors = {n: tuple(t.to(self.dtype) for t in ts) for n, ts in entry.tensors.items()}
        return ProxyInputs(key=entry.key, tensors=tensors, seconds=entry.seconds)

    def _insert(self, digest: str, entry: ProxyInputs) -> None:
        size = entry.nbytes
        if size > self.max_bytes:  # never fits: keep it only on disk
            if self.spill_dir is not None:
                self._spill(entry)
            return
        victims: list[str] = []
        freed = 0
        for old_digest, old in self._entries.items():  # oldest first
            if self._bytes - freed + size <= self.max_bytes:
                break
            victims.append(old_digest)
            freed += old.nbytes
        if self.spill_dir is not None:
            for old_digest in victims:  # write every spill before changing RAM state
                self._spill(self._entries[old_digest])
        for old_digest in victims:
            del self._entries[old_digest]
        self._bytes -= freed
        self._counts["evictions"] += len(victims)
        self._entries[digest] = entry
        self._bytes += size

    def _path(self, key: InputsKey) -> Path:
        assert self.spill_dir is not None
        return self.spill_dir / f"{key.digest}.pt"

    def _spill(self, entry: ProxyInputs) -> None:
        """Write an evicted entry to disk; a failure is logged and counted, never raised."""
        digest = entry.key.digest
        if digest in self._on_disk:
            return  # already written or read in this dtype: same key, same content
        try:
            self._write(entry)
        except Exception as exc:  # disk full, I/O error: the entry is dropped, not the work
            self._counts["failed_spills"] += 1
            _warn_once(exc)
            return
        self._on_disk.add(digest)
        self._trim_spill_dir()

    def _trim_spill_dir(self) -> None:
        """Delete the oldest spill files until the directory fits ``spill_max_bytes``."""
        assert self.spill_dir is not None
        files = []
        for entry in os.scandir(self.spill_dir):
            if entry.name.endswith(".pt"):
                try:
                    info = entry.stat()  # one stat per file
                except OSError:  # removed meanwhile (another process trimming)
                    continue
                files.append((info.st_mtime_ns, info.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files, key=lambda t: t[0]):
            if total <= self.spill_max_bytes:
                break
            f.unlink(missing_ok=True)
            self._on_disk.discard(f.stem)
            total -= size

    def _write(self, entry: ProxyInputs) -> None:
        path = self._path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if free - entry.nbytes < MIN_FREE_DISK:
            raise DiskLowError(path.parent, free)
        payload = {
            "format": SPILL_FORMAT,
            "key": dataclasses.asdict(entry.key),
            "dtype": str(self.dtype),
            "seconds": float(entry.seconds),
            "tensors": {name: list(ts) for name, ts in entry.tensors.items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic on POSIX: readers see the old state or the whole file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, key: InputsKey) -> ProxyInputs | None:
        """Read a spill file for ``key``; None when absent, unreadable or of another dtype."""
        if self.spill_dir is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            payload: Any = torch.load(path, map_location="cpu", weights_only=True)
            ok = (
                payload["format"] == SPILL_FORMAT
                and payload["key"] == dataclasses.asdict(key)
                and payload["dtype"] == str(self.dtype)
            )
            if not ok:
                return None
            tensors = {name: tuple(ts) for name, ts in payload["tensors"].items()}
            self._on_disk.add(key.digest)
            return ProxyInputs(key=key, tensors=tensors, seconds=float(payload["seconds"]))
        except Exception:  # a corrupt or foreign file is recomputed, never trusted
            return None
