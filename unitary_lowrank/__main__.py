"""``python -m unitary_lowrank``: the command line of :mod:`unitary_lowrank.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
