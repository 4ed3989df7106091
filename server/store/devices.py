"""Push devices in PostgreSQL: the ``push_devices`` rows (inline projection of the device
streams, in the token's database), the registration and removal transactions' reads, and
the devices of a user (one query per physical database).
"""

from __future__ import annotations

from server.db import Txn
from server.domain.devices import DEVICE_TYPES, Device, DeviceRegistered, DeviceUnregistered
from server.domain.log import RecordedEvent
from server.interfaces import IShardRouter
from server.store.inline import INLINE

_COLUMNS = "token, user_id, platform, app, locale, registered_ms"


@INLINE.on(*DEVICE_TYPES)
def _devices(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        d = e.data
        if isinstance(d, DeviceRegistered):
            txn.execute(
                "INSERT INTO push_devices (token, shard, user_id, platform, app, locale, "
                "registered_ms, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (token) DO UPDATE SET shard = excluded.shard, "
                "user_id = excluded.user_id, platform = excluded.platform, app = excluded.app, "
                "locale = excluded.locale, registered_ms = excluded.registered_ms, "
                "event_id = excluded.event_id",
                (d.token, e.shard, d.user_id, d.platform, d.app, d.locale, e.created_ms, e.id))
        else:
            assert isinstance(d, DeviceUnregistered)
            txn.execute("DELETE FROM push_devices WHERE token = %s AND user_id = %s",
                        (d.token, d.user_id))


def device_txn(txn: Txn, token: str, lock: bool = False) -> Device | None:
    """The token's registration (``txn`` on the token's database), or None. ``lock`` holds
    the row until the commit (two registrations of one token then decide one after the
    other; the stream's expected version catches a first registration racing another)."""
    row = txn.fetchone(f"SELECT {_COLUMNS} FROM push_devices WHERE token = %s"
                       + (" FOR UPDATE" if lock else ""), (token,))
    return Device(*row) if row else None


def devices_of(router: IShardRouter, user_id: int) -> list[Device]:
    """The user's devices, oldest registration first: one indexed query per database."""
    found: list[Device] = []
    for db in router.databases():
        found += [Device(*row) for row in db.run_interaction(
            "devices_of", Txn.fetchall,
            f"SELECT {_COLUMNS} FROM push_devices WHERE user_id = %s", (user_id,))]
    return sorted(found, key=lambda d: (d.registered_ms, d.token))


