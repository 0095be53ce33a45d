"""The routing part of `lambdaplane net show`: each VPC's gateways, route tables, and for
each subnet whether a Lambda function / a `lambdaplane run` resource there reaches the
internet — and if not, why and the fix."""
from __future__ import annotations

from typing import Any


_COUNTER_WORDS = (("refused", "refused before the uplink (refused destination or IPv6)"),
                  ("inbound_refused", "refused coming in (not a reply)"),
                  ("out", "let out"))


def _uplink_counters(counters: dict[str, dict[str, int]]) -> list[str]:
    return [f"    {words}: {counters[name]['packets']} packets, {counters[name]['bytes']} bytes"
            for name, words in _COUNTER_WORDS if name in counters]


def render(tree: dict[str, Any]) -> list[str]:
    lines = ["routing" + ("" if tree["internet_netns"] else
                          "  (--no-uplink and no --internet-netns: gateways lead nowhere here)")]
    if tree.get("internet_via_uplink"):
        lines.append(f"  internet: the host's uplink (through {tree['internet_netns']}, "
                     "masqueraded to the host's address; private, CGNAT, link-local, loopback "
                     "and multicast destinations refused). Elastic IPs are reachable only from "
                     f"the host (ip netns exec {tree['internet_netns']} …), never from the "
                     "real network; use --internet-netns for a test internet")
        lines.extend(_uplink_counters(tree.get("uplink_counters") or {}))
    for vpc in tree["vpcs"]:
        lines.append(f"  {vpc['id']}  internet gateway: "
                     f"{', '.join(vpc['internet_gateways']) or 'none'}")
        for n in vpc["nat_gateways"]:
            lines.append(f"    NAT gateway {n['id']} {n['state']} {n['connectivity']} in "
                         f"{n['subnet']} {n['public_ip'] or n['private_ip']}")
        for e in vpc["elastic_ips"]:
            lines.append(f"    {e.get('kind', 'Elastic IP')} {e['public_ip']} → {e['interface']} "
                         f"{e['private_ip']}")
        for t in vpc["route_tables"]:
            main = " (main)" if t["main"] else ""
            subnets = f" subnets {', '.join(t['subnets'])}" if t["subnets"] else ""
            lines.append(f"    route table {t['id']}{main}{subnets}: {'; '.join(t['routes'])}")
        for s in vpc["subnets"]:
            lines.append(f"    subnet {s['id']} {s['cidr']} → {s['route_table']}")
            same = s["function"] == s["resource"]
            for who in (("functions and resources",) if same else ("functions", "resources")):
                p = s[who.split()[0].removesuffix("s")]
                verdict = {True: "internet", False: "NO internet"}.get(
                    p["internet"], f"internet {p['internet']}")
                lines.append(f"      {who}: {verdict}: {p['why']}")
                if p["internet"] is not True and p["fix"]:
                    lines.append(f"        fix: {p['fix']}")
    return lines
