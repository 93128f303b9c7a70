"""Volume keys under the master key: what the master key's rekey re-seals (kept apart from
motte.steward._volumes, which needs the secret store, so the store can call it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from motte.steward.errors import SecretKeyError

if TYPE_CHECKING:
    from motte.steward._masterkey import MasterKey
    from motte.store import Tx

#: A volume key is sealed under the master key as this name + the volume id, version 1.
KEY_NAME = "volume:"


def reseal_volume_keys(tx: Tx, old: MasterKey, new: MasterKey) -> int:
    """Re-seal every volume key under ``new`` (in the master key's rekey transaction)."""
    rows = tx.all("SELECT id, sealed_key FROM volume")
    for vid, sealed in rows:
        key = old.open(KEY_NAME + vid, 1, bytes(sealed))
        if key is None:
            raise SecretKeyError(
                f"the key of volume {vid} does not open under the current master key: the "
                "store is damaged; nothing was changed"
            )
        tx.execute(
            "UPDATE volume SET sealed_key = ? WHERE id = ?",
            (new.seal(KEY_NAME + vid, 1, key), vid),
        )
    return len(rows)
