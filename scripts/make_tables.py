"""Sweep results -> the paper's tables and figures: grasp.cli.tables (console script grasp-tables)."""

from grasp.cli.tables import main

if __name__ == "__main__":
    raise SystemExit(main())
