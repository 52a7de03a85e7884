"""The trainers' CSV loss log: one header on a fresh run, appended rows when a run resumes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO


def open_csv_log(path: Path, resuming: bool, header: list[str]) -> tuple[IO[str], csv.writer]:
    """(file, writer) for `path`; the caller closes the file. A resumed run keeps the rows already logged."""
    fresh = not (resuming and path.is_file())
    log_file = open(path, "w" if fresh else "a", newline="")  # noqa: SIM115 (the caller closes it)
    writer = csv.writer(log_file)
    if fresh:
        writer.writerow(header)
    return log_file, writer
