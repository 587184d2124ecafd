"""Runs the guide's own local validator, `validate_dda_package` (the verbatim copy of the spec's
code in tests/fixtures/guide_validator.py), as the reference the benchmark compares against.

    python bench/guide_validate.py PACKAGE.tar.gz
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
from guide_validator import validate_dda_package  # noqa: E402

if __name__ == "__main__":
    sys.exit(0 if validate_dda_package(sys.argv[1]) else 1)
