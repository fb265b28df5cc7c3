"""The evaluation's journal: every finished episode's result row, appended as soon as its batch
of episodes ends, so an interrupted evaluation loses nothing it finished and a rerun with
`resume=true` continues at the first unfinished episode.

File: <run dir>/episodes.jsonl. The first line is a header naming the config key the rows were
computed under and the episode count; every other line is one result row (JSON). Lines are
flushed and fsynced per batch; a line torn by a kill in the middle of a write is dropped when the
file is read, which only ever loses the batch that was being written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable

from grasp.errors import ConfigError
from grasp.utils import atomic_path

log = logging.getLogger(__name__)

JOURNAL_NAME = "episodes.jsonl"
JOURNAL_VERSION = 1


def _plain(value: Any) -> Any:
    """JSON-safe scalars: numpy scalars as Python ones, NaN as null (read back as NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _unplain(value: Any) -> Any:
    if value is None:
        return float("nan")
    if value in ("inf", "-inf"):
        return float(value)
    return value


class EpisodeJournal:
    """Rows of one evaluation keyed by episode index, under a config key (the hash of everything
    that decides the results, see grasp.keys.evaluation_key)."""

    def __init__(self, path: str | Path, key: str, episodes: int) -> None:
        self.path, self.key, self.episodes = Path(path), str(key), int(episodes)

    # ---- reading ------------------------------------------------------------------------------
    def read(self) -> dict[int, dict[str, Any]]:
        """The rows on file by episode (empty when there is no file). A file written under another
        config key or episode count is one ConfigError naming the file."""
        if not self.path.exists():
            return {}
        lines = self.path.read_bytes().split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("journal") != JOURNAL_VERSION:
            raise ConfigError(f"{self.path} is not an episode journal of version {JOURNAL_VERSION}: "
                              f"move it away, or rerun with resume=false to start this evaluation over")
        if header.get("key") != self.key or header.get("episodes") != self.episodes:
            raise ConfigError(
                f"resume=true: {self.path} holds episodes of another configuration (key {header.get('key')}, "
                f"{header.get('episodes')} episodes; this run: key {self.key}, {self.episodes} episodes). Resume "
                "with the same config as the interrupted run, use another hydra.run.dir, or set resume=false")
        rows: dict[int, dict[str, Any]] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                row = {k: _unplain(v) for k, v in json.loads(line).items()}
            except ValueError:
                if number == len(lines) or not any(rest.strip() for rest in lines[number:]):
                    log.warning("evaluate: dropping the torn last line of %s (an interrupted write)", self.path)
                    continue
                raise ConfigError(f"{self.path} line {number} is not a JSON row; the journal is damaged "
                                  "(rerun with resume=false to start over)") from None
            rows[int(row["episode"])] = row
        return rows

    # ---- writing ------------------------------------------------------------------------------
    def start(self, resume: bool) -> dict[int, dict[str, Any]]:
        """With `resume`, the rows already on file; otherwise a new journal (an old one in the same
        run dir is kept as episodes.previous.jsonl, never deleted)."""
        rows = self.read() if resume else {}
        if rows:
            log.info("evaluate: resuming, %d of %d episodes already in %s", len(rows), self.episodes, self.path)
        elif not resume and self.path.exists():
            previous = self.path.with_name("episodes.previous.jsonl")
            os.replace(self.path, previous)
            log.warning("evaluate: resume=false: starting over; the old journal is kept as %s", previous)
        # rewritten whole (atomically): a torn last line must not run into the next row appended
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"journal": JOURNAL_VERSION, "key": self.key, "episodes": self.episodes}
        with atomic_path(self.path) as tmp:
            _write_lines(tmp, [json.dumps(header)] + [_row_line(rows[i]) for i in sorted(rows)], mode="w")
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """One line per row, flushed to disk before returning."""
        _write_lines(self.path, [_row_line(row) for row in rows], mode="a")


def _row_line(row: dict[str, Any]) -> str:
    return json.dumps({k: _plain(v) for k, v in row.items()})


def _write_lines(path: Path, lines: list[str], mode: str) -> None:
    if not lines:
        return
    with open(path, mode) as fh:
        fh.write("".join(line + "\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())
