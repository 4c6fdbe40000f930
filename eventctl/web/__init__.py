"""The optional web app (``pip install 'eventctl[serve]'``). Imported only by ``eventctl serve``."""
