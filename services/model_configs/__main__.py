"""``python -m services.model_configs [--check]``: write (or compare) the CPU ``model_repository/`` configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.model_configs.repository import CPU_REPOSITORY, REGENERATE, stale_configs, write_configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.model_configs", description=__doc__)
    parser.add_argument("--repository", type=Path, default=CPU_REPOSITORY, help="the model repository folder")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_configs(args.repository)
        for path in stale:
            print(f"{path} differs from its definition: run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_configs(args.repository):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
