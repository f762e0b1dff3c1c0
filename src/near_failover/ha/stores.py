"""Which lease store an inventory asks for: the one module that knows both stores (each imports
ha/lease.py, the interface; the interface imports neither)."""

from __future__ import annotations

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.etcd_transport import tls_context
from near_failover.ha.lease import LeaseConfigError, LeaseStore
from near_failover.ha.sqlite_lease import SqliteLeaseStore
from near_failover.inventory import Inventory, InventoryError, read_secret_file


def open_lease_store(inventory: Inventory, node: str | None = None) -> LeaseStore:
    """The store the inventory's ``[lease]`` table names; without one, the embedded sqlite store.

    ``node`` is the node this process runs for (an agent, the boot guard): its etcd requests
    leave from that node's ``lease_source_address`` when it has one."""
    settings = inventory.lease
    if settings is not None and settings.store == "etcd":
        tls_files = (settings.ca_file, settings.cert_file, settings.key_file)
        credentials = None
        if settings.username is not None and settings.password_file is not None:
            try:
                credentials = (settings.username, read_secret_file(settings.password_file, "password_file"))
            except InventoryError as exc:
                raise LeaseConfigError(str(exc)) from None
        return EtcdLeaseStore(
            settings.endpoints,
            inventory.validator.account_id,
            operation_timeout=settings.retry_timeout,
            local_address=inventory.node(node).lease_source_address if node else None,
            tls=tls_context(*tls_files) if any(tls_files) else None,
            credentials=credentials,
        )
    return SqliteLeaseStore.for_inventory(inventory)
