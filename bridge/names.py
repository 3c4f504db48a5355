"""How a sender is named on a destination network (the gateway's nick template)."""

from __future__ import annotations

from bridge.model import Identity, RemoteUser, Sender

# Networks that can show each sender under their own name get the network tag,
# so readers know which side a colleague is on; relay lines don't need it.
GHOST_TEMPLATE = "{name} ({network})"
RELAY_TEMPLATE = "{name}"


def sender_for(user: RemoteUser, identity: Identity | None, source_label: str, template: str) -> Sender:
    name = identity.name if identity else (user.display or user.native_id)
    try:
        display = template.format(name=name, network=source_label, id=user.native_id)
    except (KeyError, IndexError, ValueError):
        display = f"{name} ({source_label})"
    return Sender(
        network=user.network,
        native_id=user.native_id,
        display_name=display,
        name=name,
        network_label=source_label,
        employee_id=identity.employee_id if identity else None,
    )
