"""Pod IPs: one /32 per pod on the loopback interface.

The API server refuses loopback (127.0.0.0/8) addresses in EndpointSlices, so Services
would never list a pod with a 127.x address. Pods therefore get addresses from a private
range (--pod-cidr) added to `lo`: only this host can reach them, servers
can bind to them, and the endpoint-slice controller accepts them. Where the agent may not
change interfaces (no CAP_NET_ADMIN) it falls back to 127.244.x.y addresses, and says so.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def _ip(*args: str) -> bool:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    return result.returncode == 0 or "File exists" in result.stderr


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
        probe = str(self.network.network_address + 254)
        self.on_loopback_interface = _ip("addr", "add", f"{probe}/32", "dev", "lo")
        if self.on_loopback_interface:
            _ip("addr", "del", f"{probe}/32", "dev", "lo")
        else:
            log.warning("cannot add addresses to lo (no CAP_NET_ADMIN?); pods get 127.x "
                        "addresses and Services will list no endpoints")
            self.network = ipaddress.ip_network("127.244.0.0/16")

    def allocate(self, uid: str) -> str:
        """Return the pod's address, adding it to `lo` on first use."""
        with self._lock:
            if uid in self._by_uid:
                address = self._by_uid[uid]
            else:
                address = self._next_free()
                self._by_uid[uid] = address
                self._save()
        if self.on_loopback_interface:
            _ip("addr", "add", f"{address}/32", "dev", "lo")
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
        """Remove the pod's address from `lo` and forget it."""
        with self._lock:
            address = self._by_uid.pop(uid, None)
            self._save()
        if address and self.on_loopback_interface:
            _ip("addr", "del", f"{address}/32", "dev", "lo")

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
