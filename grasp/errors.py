"""The package's own exceptions, in a module that imports nothing of the package, so the config,
the schema and every stage can raise them without importing each other."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

#: the exit status of a run stopped by bad input (argparse's convention); 1 stays for failures
BAD_INPUT_STATUS = 2


class ConfigError(ValueError):
    """A bad config value or input file; the message names the key or file and what is allowed."""


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Around a command line's work: a ConfigError becomes one line on stderr and exit status 2,
    with no traceback (HYDRA_FULL_ERROR=1 keeps the traceback, as for Hydra's own errors)."""
    try:
        yield
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"grasp: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(BAD_INPUT_STATUS) from None
