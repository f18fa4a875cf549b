"""``make bench``: run every benchmark in turn."""

from __future__ import annotations

import sys

from bench import drain


def main() -> int:
    quick = "--quick" in sys.argv
    drain.main(quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
