"""`lambdaplane net show`: the VPCs, their subnets, interfaces (addresses, groups) and
security group rule counts, as a tree."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .admin_client import ServerError, call, short_command


def render(tree: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for region in tree["regions"]:
        lines.append(f"region {region['region']}")
        vpcs = region["vpcs"]
        for i, vpc in enumerate(vpcs):
            last_vpc = i == len(vpcs) - 1
            pre = "    " if last_vpc else "│   "
            default = " (default)" if vpc["default"] else ""
            lines.append(f"{'└── ' if last_vpc else '├── '}{vpc['id']} {vpc['cidr']}{default}"
                         f"  netns {vpc['netns']}")
            groups = ", ".join(f"{g['name']} {g['id']} in:{g['ingress']} out:{g['egress']}"
                               for g in vpc["groups"])
            items: list[tuple[str, list[str]]] = [(f"security groups: {groups}", [])]
            items += _dns_items(vpc)
            for s in vpc["subnets"]:
                kids = []
                for e in s["interfaces"]:
                    who = e["name"] or short_command(e["argv"], 40) or e["description"] or ""
                    pid = e["process_pid"] or e["owner_pid"]
                    kids.append(f"{e['id']} {e['ip']} {e['type']} {e['status']} "
                                f"groups [{', '.join(g['name'] for g in e['groups'])}] "
                                f"rules in:{e['rules_in']} out:{e['rules_out']}"
                                + (f" pid {pid}" if pid else "") + (f"  {who}" if who else ""))
                items.append((f"{s['id']} {s['cidr']} {s['az']}  {s['available']} free", kids))
            for j, (text, kids) in enumerate(items):
                last = j == len(items) - 1
                lines.append(pre + ("└── " if last else "├── ") + text)
                kid_pre = pre + ("    " if last else "│   ")
                for k, kid in enumerate(kids):
                    lines.append(kid_pre + ("└── " if k == len(kids) - 1 else "├── ") + kid)
    return lines


def _dns_items(vpc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The VPC resolver (AmazonProvidedDNS) and the interface endpoints of a VPC."""
    dns = vpc.get("dns") or {}
    items: list[tuple[str, list[str]]] = []
    if dns.get("resolver"):
        state = "listening" if dns["listening"] else "NOT listening"
        support = "on" if dns.get("support") else "OFF (no answers)"
        forwards = "forwarded upstream" if dns.get("forwards") else \
            "not forwarded (no internet gateway or no --dns-upstream)"
        kids = [f"private name {n}" for n in dns.get("private_names", [])]
        items.append((f"DNS {dns['resolver']} {state}: support {support}, hostnames "
                      f"{'on' if dns.get('hostnames') else 'off'}, other names {forwards}",
                      kids))
    for e in vpc.get("endpoints") or []:
        items.append((f"endpoint {e['id']} {e['service']} {e['state']} private DNS "
                      f"{'on' if e['private_dns'] else 'off'}", list(e["interfaces"])))
    return items


def main(endpoint: str, args: argparse.Namespace) -> int:
    try:
        tree = call(endpoint, "GET", "net")
    except ServerError as e:
        print(f"lambdaplane net: {e}", file=sys.stderr)
        return 1
    for line in render(tree):
        print(line)
    from . import net_routes

    try:
        routing = call(endpoint, "GET", "net/routing")
    except ServerError as e:
        print(f"lambdaplane net: routing: {e}", file=sys.stderr)
        return 1
    for line in net_routes.render(routing):
        print(line)
    return 0
