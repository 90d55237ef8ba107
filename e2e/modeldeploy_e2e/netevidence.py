"""What the node's kernel knew just after a request through a ClusterIP failed.

A connect that ends in "No route to host" means the node could not resolve a next hop on one
of its bridges: either the SYN left with the ClusterIP itself as destination (kube-proxy's
DNAT did not apply: the Service range is routed to the node's bridge, where nothing answers
ARP for it), or it was rewritten to a pod IP that no longer sits on the pods' bridge. The
neighbour table tells which (a FAILED entry names the address), the NAT rules show which
endpoints kube-proxy had written for the Service, and the connection-tracking entries for
the ClusterIP show where each recent connection was sent. Read once, at the first failure,
so the report carries evidence rather than a guess.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence


def service_nat_rules(iptables_save: str, namespace: str, service: str) -> list[str]:
    """kube-proxy's NAT rules for one Service: those it comments with `namespace/service`
    (its KUBE-SERVICES, KUBE-SVC-* and KUBE-SEP-* lines; the name ends at the port's name,
    a space or the quote, so `web` does not take `web-preview`'s rules)."""
    key = re.compile(rf'"{re.escape(namespace)}/{re.escape(service)}[: "]')
    return [line for line in iptables_save.splitlines() if key.search(line)]


def conntrack_entries(table: str, address: str) -> list[str]:
    """The connection-tracking lines (/proc/net/nf_conntrack) that mention `address`."""
    needle = f"={address} "
    return [line.strip() for line in table.splitlines() if needle in f"{line} "]


def unanswered(entries: Sequence[str]) -> list[str]:
    """The tracked connections that never got a reply (`[UNREPLIED]`): a failed connect's own
    entry, whose reply tuple says whether its SYN was rewritten to a pod (reply from the pod
    IP) or left as it was (reply expected from the ClusterIP itself)."""
    return [line for line in entries if "[UNREPLIED]" in line.split()]


def conntrack_counters(stat: str) -> dict[str, int]:
    """/proc/net/stat/nf_conntrack summed over CPUs: a header row, then one row of hex
    counters per CPU (`invalid` counts packets connection tracking refused to classify,
    which NAT never sees; `insert_failed` and `drop` count entries it could not keep)."""
    rows = [line.split() for line in stat.splitlines() if line.strip()]
    if not rows:
        return {}
    names, totals = rows[0], dict.fromkeys(rows[0], 0)
    for row in rows[1:]:
        for name, value in zip(names, row, strict=False):
            totals[name] += int(value, 16)
    # `entries` is the table's size (the same on every row), not a per-CPU count.
    if len(rows) > 1:
        totals["entries"] = int(rows[1][0], 16)
    return totals


def failed_neighbours(neighbours: str) -> list[str]:
    """`ip neigh show` lines whose state says resolution failed or is still under way."""
    states = ("FAILED", "INCOMPLETE", "PROBE")
    return [line for line in neighbours.splitlines() if any(s in line.split() for s in states)]


_COUNTERS = ("invalid", "insert_failed", "drop", "early_drop", "clashres", "search_restart")


def _inside(netns: str, argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"<{' '.join(argv)}: {error}>"
    if result.returncode != 0:
        return f"<{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[:200]}>"
    return result.stdout


def collect(netns: str, namespace: str, service: str, cluster_ip: str) -> str:
    """Neighbour states, the Service's NAT rules and its tracked connections, read inside
    the node's namespace now; one block of text for a test report."""
    neighbours = _inside(netns, ["ip", "neigh", "show"])
    rules = service_nat_rules(_inside(netns, ["iptables-save", "-t", "nat"]), namespace,
                              service)
    tracked = conntrack_entries(_inside(netns, ["cat", "/proc/net/nf_conntrack"]), cluster_ip)
    counters = conntrack_counters(_inside(netns, ["cat", "/proc/net/stat/nf_conntrack"]))
    notable = {name: counters[name] for name in _COUNTERS if counters.get(name)}
    return "\n".join([
        f"neighbours not resolved: {failed_neighbours(neighbours) or 'none'}",
        "all neighbours:", neighbours.rstrip(),
        f"NAT rules for {namespace}/{service}:", *rules,
        f"unanswered connections to {cluster_ip}:", *(unanswered(tracked) or ["none"]),
        f"tracked connections to {cluster_ip} ({len(tracked)}, the last 10 shown):",
        *tracked[-10:],
        f"connection-tracking counters (non-zero of {', '.join(_COUNTERS)}): {notable}",
    ])
