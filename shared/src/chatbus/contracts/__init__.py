"""Every message that travels on the bus, one module per domain.

Subjects carry their major version (``chat.request.v1.<agent>``). See ``base.Message``.
"""

from chatbus.contracts.base import ErrorReply, Message

__all__ = ["ErrorReply", "Message"]
