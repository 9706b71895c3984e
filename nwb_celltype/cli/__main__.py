"""``python -m nwb_celltype.cli``: the same as the ``nwb-celltype`` command."""

from . import main

main()
