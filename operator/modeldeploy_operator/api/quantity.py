"""Kubernetes resource quantities ("10Gi", "500M", "1e9") as whole bytes."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_FORM = re.compile(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[KMGTPE]i|[kMGTPE]?)$")


def to_bytes(quantity: str) -> int:
    """The quantity in bytes, rounded up (Kubernetes rounds a fractional byte up too)."""
    match = _FORM.match(quantity.strip())
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity such as 10Gi or 500M")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity such as 10Gi") from None
    if suffix[:1] in {"e", "E"} and suffix[1:]:
        scaled = value * (Decimal(10) ** int(suffix[1:]))
    else:
        scaled = value * (_BINARY.get(suffix) or _DECIMAL[suffix])
    return int(scaled.to_integral_value(rounding="ROUND_CEILING"))
