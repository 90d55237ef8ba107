"""Pod IPs: one /32 per pod on the loopback interface.

The API server refuses loopback (127.0.0.0/8) addresses in EndpointSlices, so Services
would never list a pod with a 127.x address. Pods therefore get addresses from a private
range (10.244.0.0/16 by default) added to `lo`: only this host can reach them, servers
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
        if state_file.exists():
            self._by_uid = json.loads(state_file.read_text())
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
                used = set(self._by_uid.values())
                # Skip .0 and .1 of each /24: they read like network and gateway addresses.
                address = next(str(ip) for ip in self.network.hosts()
                               if str(ip) not in used and int(ip) % 256 > 1)
                self._by_uid[uid] = address
                self._save()
        if self.on_loopback_interface:
            _ip("addr", "add", f"{address}/32", "dev", "lo")
        return address

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
        self.state_file.write_text(json.dumps(self._by_uid))
