"""``python -m zeroui_db.cli``: the ``zeroui-db`` command without its console script."""

from . import main

main(prog_name="zeroui-db")
