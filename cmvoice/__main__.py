"""``python -m cmvoice``: the ``cmvoice`` command, for when the script is not on PATH."""

from cmvoice.cli import main

main()
