"""The SQLite store: every generated answer and every judgment, keyed by a content hash.

>>> from emkit.store import Store
>>> store = Store("runs/demo/store.sqlite")
>>> store.put_many("generation", [(key, {"text": "..."})])
>>> store.get_many("generation", [key])
"""

from emkit.store._sqlite import STORE_FORMAT_VERSION, Store, StoreVersionError

__all__ = ["STORE_FORMAT_VERSION", "Store", "StoreVersionError"]
