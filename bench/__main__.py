"""``make bench``: every benchmark in turn, each printing its figures and its ratio to the limit or goal.

``--quick`` runs each for seconds instead of minutes (what the test suite's smoke run uses).
"""

from __future__ import annotations

import sys

from bench import bus, crowded, dlt698, drain, many, pipeline


def main() -> int:
    quick = "--quick" in sys.argv
    bus.main(quick=quick)
    crowded.main(quick=quick)
    dlt698.main(quick=quick)
    pipeline.main(quick=quick)
    drain.main(quick=quick)
    many.main(quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
