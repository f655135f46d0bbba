"""A developer laptop: the IDE plane's SQLite database and its env file only.

Deploy with ``pyinfra inventories/laptop.py deploy.py`` (or ``./bundle deploy
inventories/laptop.py``). It creates ``$XDG_DATA_HOME/zeroui/zeroui_local.db`` (default
``~/.local/share/zeroui/``) and ``$XDG_CONFIG_HOME/zeroui/ide.env`` (default
``~/.config/zeroui/``) for the user the deploy connects as. For a laptop over SSH, replace
"@local" with its address and add ``"ssh_user": "<developer>"``.
"""

ide_laptops = (["@local"], {"zeroui": {
    "site": "laptop",
    "ide": {
        "receipt_cache_limit": 500,  # the cache keeps the newest N receipts
    },
}})
