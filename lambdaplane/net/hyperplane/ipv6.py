"""IPv6 through a Hyperplane ENI (Lambda's Ipv6AllowedForDualStack), beside the IPv4 path.

A steered sandbox of a dual-stack function gets a unique-local address of its slot
(SANDBOX_NET6, a /128 on its eth0, default route via fe80::1 with a permanent neighbour entry:
no neighbour discovery, as for IPv4's 169.254.1.1). The worker lets IPv6 in from exactly these
addresses (its `ipv6_sandboxes` set, net/worker.py) and marks them like IPv4 (the ip6 steering
table `lp<i>-steer6`, map `steer6`); the fast path is IPv4 only, so IPv6 always takes the marked
route: `ip -6 rule fwmark n` → table 1000+n: default via fe80::1 (the port's MAC, permanent)
dev lp<i>t<n>. In the VPC the ip6 plane table `lp<i>-hp6` does what the ip plane does for IPv4:
TCP/UDP from sandbox addresses only, ct mark n, SNAT (NAT66) to the ENI's IPv6 address, replies
marked n → table 100000+n: SANDBOX_NET6 via fe80::2 (the transit's MAC, permanent) dev <port>.
Security groups judge the flow in the VPC's inet table as for IPv4 (the ENI's port matched by
its IPv6 address, net/security_groups.py).

Not owned: the IPv4 path and its tables (the rest of net/hyperplane/), the links themselves.
Every function is idempotent kernel work for the NetThread."""
from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass

from .. import nft, ns
from ..names import Names, back_table, eni_mark, out_table
from ..netlink import Netlink
from .model import RULE_PRIORITY, HyperplaneError, read_sysctl

SANDBOX_NET6 = ipaddress.IPv6Network("fd6c:7000::/64")  # unique-local: never leaves a VPC
ROUTER = "fe80::1"  # the ENI's port, as the worker's transit sees it
WORKER = "fe80::2"  # the worker's transit, as the ENI's port sees it
SNAT_PORTS = "1024-65535"


@dataclass(frozen=True)
class Eni6:
    """The IPv6 side of one Hyperplane ENI (desired state)."""
    n: int
    vpc_id: str
    address: str  # the ENI's IPv6 address: every flow is SNATed to it
    port: str  # the ENI's port in the VPC namespace


def sandbox_address6(slot: int) -> str:
    return str(SANDBOX_NET6.network_address + 2 + slot)


def steer6_table(names: Names) -> str:
    return f"{names.steer_table}6"


def plane6_table(names: Names) -> str:
    return f"{names.plane_table}6"


def _ip(netns: str, *lines: str) -> None:
    """IPv6 `ip` commands in `netns`, in one batch."""
    out = subprocess.run(["ip", "-6", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise HyperplaneError(f"ip in {netns}: {out.stderr.strip()}")


def _mac(netns: str, link: str) -> str:
    with Netlink(netns) as nl:
        return nl.mac(link)


def _enable(netns: str, link: str | None) -> None:
    with ns.entered(netns):
        keys = ["net.ipv6.conf.all.forwarding"] if link is None else \
            [f"net.ipv6.conf.{link}.disable_ipv6", f"net.ipv6.conf.{link}.accept_dad"]
        for key in keys:
            value = "1" if key.endswith("forwarding") else "0"
            if read_sysctl(key) != value:
                ns.set_sysctl(key, value)


def _rule(netns: str, mark: int, table: int) -> None:
    shown = subprocess.run(["ip", "-n", netns, "-6", "rule", "show", "priority",
                            str(RULE_PRIORITY)], capture_output=True, text=True).stdout
    if f"fwmark {hex(mark)} lookup {table}" not in shown:
        _ip(netns, f"rule add fwmark {mark} table {table} priority {RULE_PRIORITY}")


def steering6_ruleset(names: Names) -> str:
    """The worker's ip6 steering table: mark a steered sandbox's IPv6, untracked, into its
    ENI's transit and nowhere else; replies from a transit go to sandboxes only."""
    sandboxes, transits = names.sandbox_veth_glob, names.transit_veth_glob
    return (f"table ip6 {steer6_table(names)} {{\n"
            f"    map steer6 {{ type ipv6_addr : mark; }}\n"
            f"    chain prerouting {{\n"
            f"        type filter hook prerouting priority raw + 1; policy accept;\n"
            f"        iifname {sandboxes} meta mark set ip6 saddr map @steer6\n"
            f"        meta mark != 0 notrack\n"
            f"        iifname {transits} notrack\n"
            f"    }}\n"
            f"    chain forward {{\n"
            f"        type filter hook forward priority -10; policy accept;\n"
            f"        meta mark != 0 oifname != {transits} drop\n"
            f"        iifname {transits} oifname != {sandboxes} drop\n"
            f"    }}\n"
            f"}}\n")


def ensure_steering6(names: Names) -> None:
    netns = names.worker_netns
    if ("ip6", steer6_table(names)) not in nft.tables(steer6_table(names), netns):
        nft.apply(steering6_ruleset(names), netns)
    _enable(netns, None)


def plane6_script(names: Names, eni: Eni6, ports: str = SNAT_PORTS) -> str:
    """ENI n's IPv6 chains in the ip6 plane table (made here): one transaction, repeatable."""
    t, n, port = f"ip6 {plane6_table(names)}", eni.n, eni.port
    return "\n".join([
        f"add table {t}",
        f"add chain {t} replies {{ type filter hook prerouting priority mangle; "
        f"policy accept; }}",
        f"flush chain {t} replies",
        f"add rule {t} replies ct direction reply ct mark != 0 meta mark set ct mark",
        f"add chain {t} forward {{ type filter hook forward priority filter - 10; "
        f"policy accept; }}",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; "
        f"policy accept; }}",
        f"add chain {t} out{n}",
        f"flush chain {t} out{n}",
        f"add rule {t} out{n} ct state established,related accept",
        f"add rule {t} out{n} ct state new ip6 saddr {SANDBOX_NET6} meta l4proto {{ tcp, udp }} "
        f"ct mark set {eni_mark(n)} accept",
        f"add rule {t} out{n} drop",
        f"add chain {t} in{n}",
        f"flush chain {t} in{n}",
        f"add rule {t} in{n} ct state established,related accept",
        f"add rule {t} in{n} drop",
        f"add chain {t} snat{n}",
        f"flush chain {t} snat{n}",
        f"add rule {t} snat{n} meta l4proto {{ tcp, udp }} "
        f"snat to [{eni.address}]:{ports} fully-random",
        f"add map {t} from_port {{ type ifname : verdict; }}",
        f"add map {t} to_port {{ type ifname : verdict; }}",
        f"add map {t} snat_port {{ type ifname : verdict; }}",
        f"flush chain {t} forward",
        f"add rule {t} forward iifname vmap @from_port",
        f"add rule {t} forward oifname vmap @to_port",
        f"flush chain {t} postrouting",
        f"add rule {t} postrouting iifname vmap @snat_port",
        f'add element {t} from_port {{ "{port}" : jump out{n} }}',
        f'add element {t} to_port {{ "{port}" : jump in{n} }}',
        f'add element {t} snat_port {{ "{port}" : jump snat{n} }}',
    ])


def ensure_eni6(names: Names, eni: Eni6) -> None:
    """IPv6 through ENI `eni`: both ends of its transit and its chains in the ip6 plane. The
    IPv4 ENI (net/hyperplane/eni.py) must be in place."""
    vpc, worker, transit = names.vpc_netns(eni.vpc_id), names.worker_netns, \
        names.transit_veth(eni.n)
    if not ns.exists(vpc):
        raise HyperplaneError(f"no namespace for {eni.vpc_id}")
    ensure_steering6(names)
    _enable(worker, transit)
    _enable(vpc, eni.port)
    _enable(vpc, None)
    port_mac, transit_mac = _mac(vpc, eni.port), _mac(worker, transit)
    _ip(worker, f"neigh replace {ROUTER} lladdr {port_mac} dev {transit} nud permanent",
        f"route replace default via {ROUTER} dev {transit} onlink table {out_table(eni.n)}")
    _rule(worker, eni_mark(eni.n), out_table(eni.n))
    _ip(vpc, f"neigh replace {WORKER} lladdr {transit_mac} dev {eni.port} nud permanent",
        f"route replace {SANDBOX_NET6} via {WORKER} dev {eni.port} onlink "
        f"table {back_table(eni.n)}")
    _rule(vpc, eni_mark(eni.n), back_table(eni.n))
    stale = _dispatch_removal(names, vpc, eni.n)
    nft.apply("\n".join(stale + [plane6_script(names, eni)]), vpc)


def _dispatch_removal(names: Names, vpc: str, n: int) -> list[str]:
    t, ours = f"ip6 {plane6_table(names)}", {f"out{n}", f"in{n}", f"snat{n}"}
    lines: list[str] = []
    try:
        items = nft.list_json(f"table {t}", vpc)
    except nft.NftError:
        return []
    for item in items:
        m = item.get("map")
        if m:
            keys = [k for k, v in m.get("elem", []) if v.get("jump", {}).get("target") in ours]
            if keys:
                lines.append(f"delete element {t} {m['name']} {{ "
                             + ", ".join(f'"{k}"' for k in keys) + " }")
    return lines


def remove_eni6(names: Names, vpc_id: str, n: int) -> None:
    """Take ENI n's IPv6 path out (idempotent)."""
    vpc = names.vpc_netns(vpc_id)
    if ns.exists(vpc):
        script = _dispatch_removal(names, vpc, n)
        if script:
            nft.apply("\n".join(script), vpc)
        subprocess.run(["ip", "-n", vpc, "-6", "rule", "del", "fwmark", str(eni_mark(n)),
                        "table", str(back_table(n)), "priority", str(RULE_PRIORITY)],
                       capture_output=True)
        subprocess.run(["ip", "-n", vpc, "-6", "route", "flush", "table", str(back_table(n))],
                       capture_output=True)
    if ns.exists(names.worker_netns):
        subprocess.run(["ip", "-n", names.worker_netns, "-6", "rule", "del", "fwmark",
                        str(eni_mark(n)), "table", str(out_table(n)), "priority",
                        str(RULE_PRIORITY)], capture_output=True)
        subprocess.run(["ip", "-n", names.worker_netns, "-6", "route", "flush", "table",
                        str(out_table(n))], capture_output=True)


def remove_plane6(names: Names, vpc_id: str) -> None:
    vpc = names.vpc_netns(vpc_id)
    if ns.exists(vpc):
        nft.delete_table("ip6", plane6_table(names), vpc)


def remove_steering6(names: Names) -> None:
    if ns.exists(names.worker_netns):
        nft.delete_table("ip6", steer6_table(names), names.worker_netns)


def attach6(names: Names, slot: int, sandbox_netns: str, veth: str, n: int) -> str:
    """Give a steered sandbox its IPv6 address and path into ENI n; returns the address."""
    address, worker = sandbox_address6(slot), names.worker_netns
    _enable(sandbox_netns, "eth0")
    _enable(worker, veth)
    sandbox_mac, worker_mac = _mac(sandbox_netns, "eth0"), _mac(worker, veth)
    _ip(sandbox_netns, f"addr replace {address}/128 dev eth0 nodad",
        f"neigh replace {ROUTER} lladdr {worker_mac} dev eth0 nud permanent",
        f"route replace default via {ROUTER} dev eth0 onlink")
    _ip(worker, f"neigh replace {address} lladdr {sandbox_mac} dev {veth} nud permanent",
        f"route replace {address}/128 dev {veth}")
    script = [f"add element inet {names.nft_table} ipv6_sandboxes {{ {address} }}"]
    if _steered6(names, address):  # steered to another ENI before: moved in one transaction
        script.append(f"delete element ip6 {steer6_table(names)} steer6 {{ {address} }}")
    script.append(f"add element ip6 {steer6_table(names)} steer6 {{ {address} : {eni_mark(n)} }}")
    nft.apply("\n".join(script), worker)
    return address


def _steered6(names: Names, address: str) -> bool:
    try:
        items = nft.list_json(f"map ip6 {steer6_table(names)} steer6", names.worker_netns)
    except nft.NftError:
        return False
    return any(a == address for item in items for a, _m in item.get("map", {}).get("elem", []))


def detach6(names: Names, slot: int, sandbox_netns: str, veth: str) -> None:
    """Take a sandbox's IPv6 away again (idempotent): the next function it serves finds it as
    it was built, without IPv6 routes."""
    address, worker = sandbox_address6(slot), names.worker_netns
    if ns.exists(worker):
        script = []
        if _steered6(names, address):
            script.append(f"delete element ip6 {steer6_table(names)} steer6 {{ {address} }}")
        try:
            if any(address in (item.get("set", {}).get("elem") or []) for item in nft.list_json(
                    f"set inet {names.nft_table} ipv6_sandboxes", worker)):
                script.append(f"delete element inet {names.nft_table} ipv6_sandboxes "
                              f"{{ {address} }}")
        except nft.NftError:
            pass
        if script:
            nft.apply("\n".join(script), worker)
        subprocess.run(["ip", "-n", worker, "-6", "route", "del", f"{address}/128", "dev", veth],
                       capture_output=True)
        subprocess.run(["ip", "-n", worker, "-6", "neigh", "del", address, "dev", veth],
                       capture_output=True)
        with ns.entered(worker):
            if ns_has_link(veth):
                ns.set_sysctl(f"net.ipv6.conf.{veth}.disable_ipv6", "1")
    if ns.exists(sandbox_netns):
        for args in (["route", "del", "default", "via", ROUTER, "dev", "eth0"],
                     ["neigh", "del", ROUTER, "dev", "eth0"],
                     ["addr", "del", f"{address}/128", "dev", "eth0"]):
            subprocess.run(["ip", "-n", sandbox_netns, "-6", *args], capture_output=True)


def ns_has_link(link: str) -> bool:
    """In the current namespace (entered): whether `link` exists."""
    return os.path.exists(f"/proc/sys/net/ipv6/conf/{link}")
