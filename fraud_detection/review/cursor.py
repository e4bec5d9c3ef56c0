"""The queue's cursor: an opaque keyset position (order, sort key, transaction id).

A keyset, not an offset: a page costs the same deep in the queue as at its head, and items
labelled meanwhile shift nothing. The text is base64url of a small JSON array, so a client
must treat it as opaque, and a malformed one is told apart from a valid one exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from dataclasses import dataclass

from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN

ORDERS = ("risk", "newest")  # risk: probability, newest: scored_at; both then by id
_ID = re.compile(TRANSACTION_ID_PATTERN)


class CursorError(ValueError):
    """A ``cursor`` this service did not make, or made for another order."""


@dataclass(frozen=True)
class Position:
    """The last item of a page: the next page starts after it, in `order`."""

    order: str
    key: float  # its probability (risk) or scored_at (newest)
    transaction_id: str

    def encode(self) -> str:
        text = json.dumps([self.order, self.key, self.transaction_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, cursor: str, order: str) -> Position:
        """The position `cursor` holds; `CursorError` saying what is wrong with it."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            raw = base64.b64decode(padded, altchars=b"-_", validate=True)
            value = json.loads(raw)
        except (binascii.Error, ValueError) as e:
            raise CursorError("not a cursor this service made (pass next_cursor as it is)") from e
        if (
            not isinstance(value, list)
            or len(value) != 3
            or value[0] not in ORDERS
            or isinstance(value[1], bool)
            or not isinstance(value[1], (int, float))
            or not abs(value[1]) <= sys.float_info.max  # also NaN, inf and huge ints
            or not isinstance(value[2], str)
            or not _ID.fullmatch(value[2])
        ):
            raise CursorError("not a cursor this service made (pass next_cursor as it is)")
        if value[0] != order:
            raise CursorError(f"the cursor continues order={value[0]}, not order={order}")
        return cls(value[0], float(value[1]), value[2])
