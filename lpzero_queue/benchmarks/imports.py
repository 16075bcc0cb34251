"""User imports: a user's own trained architectures from JSON or CSV, validated all or nothing.

Every record is checked before anything is returned; the first problem raises
:class:`~lpzero_queue.benchmarks.records.RecordError` with one line naming the record (0-based
index and id) and the field.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from lpzero_queue.benchmarks.bounds import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    BoundError,
    check_cost,
    check_depth,
    check_name,
)
from lpzero_queue.benchmarks.records import (  # the shared record validation
    ArchitectureRecord,
    RecordError,
    _check_space,
    _records,
)
from lpzero_queue.errors import clip

__all__ = ["parse_import_file"]


def _number_or_text(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def _csv_raws(text: str, space: str, metric: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise RecordError(f"invalid CSV at line {reader.line_num}: {exc}") from None
    if not rows:
        raise RecordError("the file holds no records")
    header = [h.strip() for h in rows[0][1]]
    for needed in ("id", "config", metric):
        if needed not in header:
            raise RecordError(f"CSV header has no {needed!r} column (columns: {', '.join(header)})")
    if len(set(header)) != len(header):
        raise RecordError(f"CSV header repeats a column name: {', '.join(header)}")
    raws: list[dict[str, Any]] = []
    for i, (line, row) in enumerate(rows[1:]):
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        head = f"record {i} (id {cells.get('id', '')!r}): "
        if len(row) != len(header):
            raise RecordError(f"{head}line {line} has {len(row)} fields, header has {len(header)}")
        config = _json(cells["config"], f"{head}config")
        raw: dict[str, Any] = {"id": cells["id"]}
        if space == "flexibert":
            if not isinstance(config, dict):
                raise RecordError(f"{head}config: {type(config).__name__} is not an object")
            extra_keys = sorted(set(config) - {"hidden_size", "encoder_layers"})
            if extra_keys:
                raise RecordError(f"{head}config.{extra_keys[0]}: unknown key")
            raw.update(config)
        else:
            raw["config"] = config
        for name, cell in cells.items():
            if name not in ("id", "config") and cell != "":
                raw[name] = _number_or_text(cell)
        raws.append(raw)
    return raws


def parse_import_file(
    path: str | Path, *, space: str, metric: str, higher_is_better: bool
) -> list[ArchitectureRecord]:
    """Read and validate a user's own trained architectures; all records or an error.

    Formats, by extension (case-insensitive):

    * ``.json``: a list of records shaped like the shipped file of the space. FlexiBERT: ``id``,
      ``hidden_size``, ``encoder_layers`` and the metric top-level or inside ``scores``. GPT-2:
      ``id``, ``config`` and the metric top-level.
    * ``.csv``: a header with ``id``, ``config`` (a JSON object as text: FlexiBERT
      ``{"hidden_size": .., "encoder_layers": [..]}``, GPT-2 the model config) and the metric.

    Other finite numeric fields or columns become extra ground truth (non-finite ones are left
    out); ``time_to_train_s``, ``train_elapsed_s``, ``params`` and non-numeric fields go to
    ``extra``. Ids are compared as text. Record indices in messages are 0-based data rows.

    Args:
        path: The file to read (UTF-8, an optional BOM is accepted).
        space: ``"flexibert"`` or ``"gpt2"``.
        metric: The ground-truth key that must be present and finite in every record.
        higher_is_better: Direction of ``metric``, stored by the caller with the benchmark; it
            does not change parsing.

    Returns:
        Every record, in file order.

    Raises:
        RecordError: Anything is wrong; one line naming the record index, id and field.
        ValueError: ``space`` is unknown, ``metric`` is empty or ``higher_is_better`` no bool.
    """
    _check_space(space)
    if not isinstance(higher_is_better, bool):  # stored by the caller; checked here all the same
        raise ValueError(f"higher_is_better must be a bool, got {higher_is_better!r}")
    if not isinstance(metric, str) or not metric or metric in ("id", "config"):
        raise ValueError(f"metric must be a non-empty name other than id/config, got {metric!r}")
    try:
        check_name(metric, "metric")
    except BoundError as exc:
        raise RecordError(str(exc)) from None
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise RecordError(
            f"{clip(path.name)}: unknown extension {clip(path.suffix)} (valid: .json, .csv)"
        )
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecordError(
                f"{path.name}: {size / 2**20:,.1f} MiB, above the bound "
                f"{MAX_FILE_BYTES // 2**20} MiB"
            )
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise RecordError(f"{path.name}: the file is empty")
    if suffix == ".csv":
        records = _records(_csv_raws(text, space, metric), space, metric, config_prefix="config.")
    else:
        data = _json(text, path.name)
        if not isinstance(data, list):
            raise RecordError(
                f"{path.name}: top level is {type(data).__name__}, not a list of records"
            )
        prefix = "config." if space == "gpt2" else ""
        records = _records(data, space, metric, config_prefix=prefix)
    for record in records:
        try:
            check_cost(space, record.config)
        except (BoundError, ValueError) as exc:  # ValueError: a config no builder can build
            raise RecordError(f"record {record.position} (id {clip(record.key)}): {exc}") from None
    return records


def _json(text: str, what: str) -> Any:
    """Parse JSON text bounded in depth; RecordError naming ``what`` and the problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{what}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise RecordError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise RecordError(f"{what}: invalid JSON: {clip(str(exc))}") from None
    try:
        check_depth(data, what)
    except BoundError as exc:
        raise RecordError(str(exc)) from None
    return data
