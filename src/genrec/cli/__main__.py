"""``python -m genrec.cli``: the ``genrec`` command (torchrun starts DDP workers this way)."""

from genrec.cli import main

main()
