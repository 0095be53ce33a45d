"""Security group permissions as AWS takes them (IpPermissions, or the older top-level
CidrIp/IpProtocol/FromPort/ToPort form) → validated, normalised rules, one per peer."""
from __future__ import annotations

from typing import Any

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ec2_error
from ..store.ec2 import SgRule
from .ipam import parse_cidr, parse_ipv6_cidr



_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp",
              "-1": "-1", "all": "-1", "icmpv6": "58"}


def new_rule_id() -> str:
    return "sgr-" + secrets.token_hex(9)[:17]


@dataclass(frozen=True)
class Peer:
    cidr: str | None = None
    group_id: str | None = None
    description: str = ""


def normalise_protocol(raw: str | None) -> str:
    value = (raw or "").strip().lower()
    if value in _PROTOCOLS:
        return _PROTOCOLS[value]
    if value.isdigit() and 0 <= int(value) <= 255:
        return value
    raise ec2_error("InvalidParameterValue",
                    f"Invalid value '{raw}' for IP protocol. Unknown protocol.")


def _ports(protocol: str, from_port: int | None, to_port: int | None) -> tuple[int, int]:
    if protocol in ("tcp", "udp"):
        if from_port is None or to_port is None:
            raise ec2_error("InvalidParameterValue",
                            "Invalid value 'Must specify both from and to ports with TCP/UDP.' "
                            "for portRange")
        if not (0 <= from_port <= 65535 and 0 <= to_port <= 65535) or from_port > to_port:
            raise ec2_error("InvalidParameterValue",
                            f"Invalid value '{from_port}-{to_port}' for portRange. "
                            "Ports must be between 0 and 65535.")
        return from_port, to_port
    if protocol in ("icmp", "58"):  # ICMPv6 (58) keeps its type and code the same way
        icmp_type = -1 if from_port is None else from_port
        code = -1 if to_port is None else to_port
        if not -1 <= icmp_type <= 255 or not -1 <= code <= 255:
            raise ec2_error("InvalidParameterValue",
                            f"Invalid value '{icmp_type}' for icmp type or code.")
        return icmp_type, code
    return -1, -1  # all protocols or one without ports: AWS shows no port range


def rules_from_permissions(group_id: str, egress: bool, permissions: list[dict[str, Any]],
                           resolve_group: Callable[[dict[str, Any]], str]) -> list[SgRule]:
    """One rule per (permission, peer). `resolve_group(pair)` turns a UserIdGroupPair into a
    group id (raising InvalidGroup.NotFound)."""
    rules: list[SgRule] = []
    for perm in permissions:
        protocol = normalise_protocol(perm.get("IpProtocol"))
        from_port, to_port = _ports(protocol, perm.get("FromPort"), perm.get("ToPort"))
        peers: list[Peer] = []
        for r in perm.get("IpRanges") or []:
            cidr = str(parse_cidr(r.get("CidrIp") or "", "cidrIp"))
            peers.append(Peer(cidr=cidr, description=r.get("Description") or ""))
        for r in perm.get("Ipv6Ranges") or []:
            cidr = str(parse_ipv6_cidr(r.get("CidrIpv6") or "", "cidrIpv6"))
            peers.append(Peer(cidr=cidr, description=r.get("Description") or ""))
        for pair in perm.get("UserIdGroupPairs") or []:
            peers.append(Peer(group_id=resolve_group(pair), description=pair.get("Description") or ""))
        if perm.get("PrefixListIds"):
            raise ec2_error("InvalidParameterValue",
                            "Prefix lists are not supported by lambdaplane")
        if not peers:
            raise ec2_error("InvalidParameterValue",
                            "The request must contain at least one of CidrIp, "
                            "SourceSecurityGroupName or a group pair")
        for peer in peers:
            rules.append(SgRule(new_rule_id(), group_id, egress, protocol, from_port, to_port,
                                peer.cidr, peer.group_id, peer.description))
    return rules


def legacy_permissions(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The older single-rule form of Authorize/Revoke (CidrIp, IpProtocol, FromPort, ToPort,
    SourceSecurityGroupName/Id) as one IpPermissions entry."""
    if not params.get("CidrIp") and not params.get("SourceSecurityGroupName") \
            and not params.get("SourceSecurityGroupId"):
        return []
    perm: dict[str, Any] = {"IpProtocol": params.get("IpProtocol") or "-1",
                  "FromPort": params.get("FromPort"), "ToPort": params.get("ToPort")}
    if params.get("CidrIp"):
        perm["IpRanges"] = [{"CidrIp": params["CidrIp"]}]
    else:
        perm["UserIdGroupPairs"] = [{"GroupName": params.get("SourceSecurityGroupName"),
                                     "GroupId": params.get("SourceSecurityGroupId")}]
    return [perm]


def describe_rule(rule: SgRule) -> str:
    """AWS's wording of a rule in InvalidPermission.Duplicate."""
    peer = rule.cidr or rule.ref_group_id
    proto = {"-1": "ALL", "tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}.get(rule.protocol, rule.protocol)
    if rule.protocol in ("tcp", "udp"):
        return f"peer: {peer}, {proto}, from port: {rule.from_port}, to port: {rule.to_port}, ALLOW"
    return f"peer: {peer}, {proto}, ALLOW"


PERMISSION_FILTERS = ("cidr", "from-port", "to-port", "group-id", "group-name", "protocol",
                      "user-id", "ipv6-cidr", "prefix-list-id")


def permission_filter_values(rules: list[SgRule], prefix: str, group_names: dict[str, str],
                             account_id: str) -> dict[str, list[str]]:
    """DescribeSecurityGroups' `ip-permission.*` (prefix "ip-permission.") or
    `egress.ip-permission.*` values of a group's rules in one direction. As on AWS, each filter
    looks at all the rules on its own (two filters may match two different rules)."""
    values: dict[str, list[str]] = {prefix + name: [] for name in PERMISSION_FILTERS}
    for r in rules:
        values[prefix + "protocol"].append(r.protocol)
        if r.protocol in ("tcp", "udp", "icmp", "58"):
            values[prefix + "from-port"].append(str(r.from_port))
            values[prefix + "to-port"].append(str(r.to_port))
        if r.cidr:
            values[prefix + ("ipv6-cidr" if ":" in r.cidr else "cidr")].append(r.cidr)
        if r.ref_group_id:
            values[prefix + "group-id"].append(r.ref_group_id)
            values[prefix + "group-name"].append(group_names.get(r.ref_group_id, ""))
            values[prefix + "user-id"].append(account_id)
    return values
