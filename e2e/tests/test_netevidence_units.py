"""The evidence read at a failed request keeps the lines that explain it and no others."""

from __future__ import annotations

from modeldeploy_e2e.netevidence import (
    conntrack_counters,
    conntrack_entries,
    failed_neighbours,
    service_nat_rules,
    unanswered,
)

NAT = """*nat
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -d 10.96.0.20/32 -m comment --comment "md/web:http cluster IP" -j KUBE-SVC-AAA
-A KUBE-SERVICES -d 10.96.0.21/32 -m comment --comment "md/web-preview:http cluster IP" -j SVC-B
-A KUBE-SVC-AAA -m comment --comment "md/web:http -> 10.244.0.7:8080" -j KUBE-SEP-CCC
-A KUBE-SEP-CCC -m comment --comment "md/web:http" -m tcp -j DNAT --to-destination 10.244.0.7:8080
-A KUBE-SERVICES -d 10.96.0.22/32 -m comment --comment "other/web:http cluster IP" -j KUBE-SVC-DDD
COMMIT
"""


def test_nat_rules_are_those_of_the_one_service_not_a_namesake_or_a_prefix() -> None:
    rules = service_nat_rules(NAT, "md", "web")
    assert len(rules) == 3
    assert all('"md/web:' in rule for rule in rules)


def test_conntrack_lines_are_kept_only_for_the_exact_address() -> None:
    table = "\n".join([
        "ipv4 2 tcp 6 117 TIME_WAIT src=10.250.0.1 dst=10.96.0.20 sport=40000 dport=80 "
        "src=10.244.0.7 dst=10.244.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1",
        "ipv4 2 tcp 6 117 TIME_WAIT src=10.250.0.1 dst=10.96.0.201 sport=40001 dport=80",
        "ipv4 2 tcp 6 117 SYN_SENT src=10.250.0.1 dst=10.96.0.20 sport=40002 dport=80",
    ])
    kept = conntrack_entries(table, "10.96.0.20")
    assert [line.split()[5] for line in kept] == ["TIME_WAIT", "SYN_SENT"]


def test_only_unresolved_neighbours_are_singled_out() -> None:
    neighbours = "\n".join([
        "10.244.0.7 dev cni0 lladdr 0a:58:0a:f4:00:07 REACHABLE",
        "10.96.0.20 dev md-br FAILED",
        "10.244.0.9 dev cni0 INCOMPLETE",
        "10.244.0.5 dev cni0 lladdr 0a:58:0a:f4:00:05 STALE",
    ])
    assert failed_neighbours(neighbours) == ["10.96.0.20 dev md-br FAILED",
                                             "10.244.0.9 dev cni0 INCOMPLETE"]


def test_an_unanswered_connect_is_singled_out_with_its_reply_tuple() -> None:
    kept = [
        "ipv4 2 tcp 6 117 TIME_WAIT src=10.250.0.1 dst=10.96.0.20 sport=40000 dport=80 "
        "src=10.244.0.7 dst=10.244.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1",
        "ipv4 2 tcp 6 117 SYN_SENT src=10.250.0.1 dst=10.96.0.20 sport=40002 dport=80 "
        "[UNREPLIED] src=10.96.0.20 dst=10.250.0.1 sport=80 dport=40002 mark=0 use=1",
    ]
    assert unanswered(kept) == [kept[1]]


def test_conntrack_counters_sum_the_cpus_but_not_the_table_size() -> None:
    stat = "\n".join([
        "entries  clashres found new invalid ignore delete",
        "00000062  00000000 00000001 00000000 00000003 00000000 00000000",
        "00000062  00000001 00000000 00000000 0000000a 00000000 00000000",
    ])
    counters = conntrack_counters(stat)
    assert counters["invalid"] == 13
    assert counters["clashres"] == 1
    assert counters["entries"] == 0x62
