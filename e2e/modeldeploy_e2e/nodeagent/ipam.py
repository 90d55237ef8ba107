"""Pod IPs: one loopback address (127.0.0.0/8) per pod.

Linux routes the whole of 127.0.0.0/8 to `lo`, so each pod's servers bind to an address of
their own without any interface change, and test traffic never leaves loopback (the only
range this machine may send test traffic to). The API server refuses loopback addresses
in EndpointSlices, so Services here have none; the traffic helper derives endpoints from
the Pods with the EndpointSlice controller's rule instead (see modeldeploy_e2e.traffic).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class PodIPs:
    """Allocate, persist and release pod addresses; safe to share between threads."""

    def __init__(self, cidr: str, state_file: Path) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.state_file = state_file
        self._lock = threading.Lock()
        self._by_uid: dict[str, str] = {}
        self._last = 0
        if state_file.exists():
            saved = json.loads(state_file.read_text())
            if "pods" not in saved:  # the first format: a bare uid -> address map
                saved = {"pods": saved}
            self._by_uid, self._last = saved["pods"], int(saved.get("last", 0))
        if not (
            isinstance(self.network, ipaddress.IPv4Network) and self.network.subnet_of(LOOPBACK)
        ):
            raise ValueError(
                f"--pod-cidr must lie inside {LOOPBACK}, got {cidr}: pods may "
                "only have loopback addresses on this machine"
            )

    def allocate(self, uid: str) -> str:
        """Return the pod's address (the same one for the pod's whole life)."""
        with self._lock:
            if uid in self._by_uid:
                address = self._by_uid[uid]
            else:
                address = self._next_free()
                self._by_uid[uid] = address
                self._save()
        return address

    def _next_free(self) -> str:
        """The next unused address after the last one handed out.

        Handing out addresses in a ring, not lowest-first, keeps a new pod off the
        address a deleted pod just left, whose sockets may still sit in TIME_WAIT.
        """
        used = set(self._by_uid.values())
        first, size = int(self.network.network_address), self.network.num_addresses
        for step in range(1, size):
            candidate = ipaddress.ip_address(first + (self._last + step) % size)
            # Skip .0, .1 and .255 of each /24: they read like network/gateway/broadcast.
            if int(candidate) % 256 in (0, 1, 255) or str(candidate) in used:
                continue
            self._last = int(candidate) - first
            return str(candidate)
        raise RuntimeError(f"pod CIDR {self.network} is exhausted; pass a larger --pod-cidr")

    def release(self, uid: str) -> None:
        """Forget the pod's address."""
        with self._lock:
            self._by_uid.pop(uid, None)
            self._save()

    def release_except(self, keep: set[str]) -> None:
        """Release addresses of pods not in `keep` (left over from an agent that was killed)."""
        for uid in list(self._by_uid):
            if uid not in keep:
                self.release(uid)

    def release_all(self) -> None:
        """Release every address (agent shutdown)."""
        for uid in list(self._by_uid):
            self.release(uid)

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"pods": self._by_uid, "last": self._last}))
