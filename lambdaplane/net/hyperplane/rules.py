"""The nftables text of the Hyperplane data path, and its reading back: the worker's steering
table, a VPC's plane table, ENI n's chains/counters/dispatch, the port guard of ENI n. Pure
rendering and parsing of `nft -j` output, plus the one read of a plane table (`plane_objects`)
the other modules parse; nothing here changes the kernel."""
from __future__ import annotations

from typing import Any

from .. import nft
from ..names import Names, eni_mark
from ..worker import GATEWAY, SANDBOX_NET
from .model import SNAT_PORTS, HyperplaneEni

# Bumped whenever steering_ruleset changes: an older table (a worker namespace that outlived its
# server) is then replaced, its map elements carried over in the same transaction.
STEERING_VERSION = "steer-3"
# Reply routing: a new flow from a transit gets ct mark n; its replies (after de-NAT) take mark
# n from it and so ENI n's back table. Unmarked packets never find a route to a sandbox.
# The idle timeout: a ct timeout object (named after its value, so a change is a new object)
# that out<n> gives each new flow it admits (conntrack has made the entry and not yet confirmed
# it) in chain `new_flow`; the VPC's own flows keep conntrack's defaults.
# plane-3: flows from an ENI to the VPC namespace itself (the VPC resolver, net/vpc.py) pass
# the ENI's out<n> chain on the input hook too and are SNATed to the ENI's address there (a
# reply is addressed to the ENI, for which the namespace has a route), and the replies take
# their mark back (chain local_replies), so after de-NAT they find the way to the sandbox.
PLANE_VERSION = "plane-3"

NftObject = dict[str, Any]  # one item of `nft -j list ...`


def steering_ruleset(names: Names) -> str:
    table = names.steer_table
    sandboxes, transits = names.sandbox_veth_glob, names.transit_veth_glob
    return (
        f"table ip {table} {{\n"
        f'    comment "{STEERING_VERSION}"\n'
        f"    map steer {{ type ipv4_addr : mark; }}\n"
        f"    chain prerouting {{\n"
        # raw + 1: after the worker's raw-priority anti-spoofing (fib saddr . iif), so a
        # sandbox can only steer its own address, and before conntrack (-200), so that
        # steered flows are not tracked here.
        f"        type filter hook prerouting priority raw + 1; policy accept;\n"
        # the Runtime API (the gateway) is local to the worker for every sandbox: its
        # packets are not steered
        f"        iifname {sandboxes} ip daddr != {GATEWAY} meta mark set ip saddr map @steer\n"
        # The hyperplane plane tracks these flows (NAT, filter, flow counts); a second entry
        # here cost a conntrack pass per packet and put every VPC flow of every sandbox, of
        # every VPC, in the worker's one table (nf_conntrack_max counts per namespace), next
        # to the uplink's flows. Both directions skip it; the worker's forward chain admits
        # untracked packets from a transit to a sandbox only.
        f"        meta mark != 0 notrack\n"
        f"        iifname {transits} notrack\n"
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority -10; policy accept;\n"
        # a steered packet leaves by a transit or not at all: if its ENI's table has lost its
        # route (ENI being removed), the lookup falls through to main, i.e. to the uplink
        f"        meta mark != 0 oifname != {transits} drop\n"
        # a transit carries replies to sandboxes and nothing else: what may come back at all
        # (established/related flows only) is decided statefully by the plane's in<n> chain
        f"        iifname {transits} oifname != {sandboxes} drop\n"
        f"    }}\n"
        f"}}\n")


def plane_ruleset(names: Names) -> str:
    table = names.plane_table
    return (
        f"table ip {table} {{\n"
        f'    comment "{PLANE_VERSION}"\n'
        f"    map from_port {{ type ifname : verdict; }}\n"
        f"    map to_port {{ type ifname : verdict; }}\n"
        f"    map snat_port {{ type ifname : verdict; }}\n"
        f"    chain new_flow {{\n"
        f"    }}\n"
        f"    chain replies {{\n"
        f"        type filter hook prerouting priority mangle; policy accept;\n"
        f"        ct direction reply ct mark != 0 meta mark set ct mark\n"
        f"    }}\n"
        # before the security groups' forward chain (priority filter): a drop here is final,
        # an accept lets the groups decide
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter - 10; policy accept;\n"
        f"        iifname vmap @from_port\n"
        f"        oifname vmap @to_port\n"
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        iifname vmap @snat_port\n"
        f"    }}\n"
        f"    chain input {{\n"
        f"        type filter hook input priority filter - 10; policy accept;\n"
        f"        iifname vmap @from_port\n"
        f"    }}\n"
        # the namespace's own services see the ENI's address, as forwarded flows do; a
        # reply's way back (de-NAT at output, then a lookup by its mark) needs the nat
        # output hook registered
        f"    chain input_nat {{\n"
        f"        type nat hook input priority 100; policy accept;\n"
        f"        iifname vmap @snat_port\n"
        f"    }}\n"
        f"    chain output_nat {{\n"
        f"        type nat hook output priority -100; policy accept;\n"
        f"    }}\n"
        f"    chain local_replies {{\n"
        f"        type route hook output priority mangle; policy accept;\n"
        f"        ct direction reply ct mark != 0 meta mark set ct mark\n"
        f"    }}\n"
        f"}}\n")


def idle_object(idle_timeout_s: int) -> str:
    return f"idle{int(idle_timeout_s)}"


def idle_timeout_script(names: Names, idle_timeout_s: int, stale: set[str]) -> str:
    """Point chain new_flow at the ct timeout object of `idle_timeout_s`; delete `stale` ones."""
    t, idle = f"ip {names.plane_table}", idle_object(idle_timeout_s)
    return "\n".join(
        [f"add ct timeout {t} {idle} {{ protocol tcp; l3proto ip; "
         f"policy = {{ established: {int(idle_timeout_s)} }}; }}",
         f"flush chain {t} new_flow",
         f'add rule {t} new_flow ct timeout set "{idle}" accept']
        + [f"delete ct timeout {t} {old}" for old in sorted(stale - {idle})])


def eni_chains(n: int) -> set[str]:
    return {f"out{n}", f"in{n}", f"snat{n}"}


def eni_counter_names(n: int) -> set[str]:
    return {f"tx{n}", f"rx{n}", f"drop{n}", f"new{n}"}


def eni_script(names: Names, eni: HyperplaneEni, ports: str = SNAT_PORTS) -> str:
    """ENI n's chains, counters and dispatch elements: one transaction, safe to repeat."""
    table, n, port = names.plane_table, eni.n, eni.port
    t = f"ip {table}"
    return "\n".join([
        f"add counter {t} tx{n}",
        f"add counter {t} rx{n}",
        f"add counter {t} drop{n}",
        f"add counter {t} new{n}",
        f"add chain {t} out{n}",
        f"flush chain {t} out{n}",
        f'add rule {t} out{n} counter name "tx{n}"',
        f"add rule {t} out{n} ct state established,related accept",
        # AWS: TCP and UDP only; from sandbox addresses only
        # new<n>: flows opened (SYN retries of a flow that found no port count again)
        f"add rule {t} out{n} ct state new ip saddr {SANDBOX_NET} meta l4proto {{ tcp, udp }} "
        f'ct mark set {eni_mark(n)} counter name "new{n}" goto new_flow',
        f'add rule {t} out{n} counter name "drop{n}" drop',
        f"add chain {t} in{n}",
        f"flush chain {t} in{n}",
        f'add rule {t} in{n} counter name "rx{n}"',
        f"add rule {t} in{n} ct state established,related accept",
        # nothing in the VPC may open a connection to a function
        f'add rule {t} in{n} counter name "drop{n}" drop',
        f"add chain {t} snat{n}",
        f"flush chain {t} snat{n}",
        # fully-random: every new flow gets a random port of the range, so sandbox ports are
        # neither kept nor guessable; `persistent` only matters for several addresses
        f"add rule {t} snat{n} meta l4proto {{ tcp, udp }} "
        f"snat to {eni.address}:{ports} fully-random",
        f'add element {t} from_port {{ "{port}" : jump out{n} }}',
        f'add element {t} to_port {{ "{port}" : jump in{n} }}',
        f'add element {t} snat_port {{ "{port}" : jump snat{n} }}',
    ])


def plane_objects(names: Names, netns: str) -> list[NftObject]:
    """The plane table of `netns` as `nft -j` items (empty when there is none)."""
    try:
        return nft.list_json(f"table ip {names.plane_table}", netns)
    except nft.NftError:
        return []


def dispatch_removal(names: Names, n: int, objects: list[NftObject]) -> list[str]:
    """Commands deleting the map elements that dispatch to ENI n's chains."""
    t, ours = f"ip {names.plane_table}", eni_chains(n)
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        if m:
            keys = [k for k, v in m.get("elem", []) if v.get("jump", {}).get("target") in ours]
            if keys:
                lines.append(f"delete element {t} {m['name']} {{ "
                             + ", ".join(f'"{k}"' for k in keys) + " }")
    return lines


def eni_removal(names: Names, n: int, objects: list[NftObject]) -> str:
    """Commands deleting ENI n's dispatch, chains and counters from a plane (read as
    `objects`)."""
    t = f"ip {names.plane_table}"
    lines = dispatch_removal(names, n, objects)
    chains = {item["chain"]["name"] for item in objects if "chain" in item}
    lines += [f"delete chain {t} {c}" for c in sorted(eni_chains(n) & chains)]
    counters = {item["counter"]["name"] for item in objects if "counter" in item}
    lines += [f"delete counter {t} {c}" for c in sorted(eni_counter_names(n) & counters)]
    return "\n".join(lines)


def snat_address(objects: list[NftObject], n: int) -> str | None:
    """The address ENI n's snat<n> chain translates to."""
    address: str | None = None
    for item in objects:
        rule = item.get("rule")
        if rule and rule["chain"] == f"snat{n}":
            for expr in rule["expr"]:
                if "snat" in expr:
                    address = expr["snat"].get("addr")
    return address


def dispatch(objects: list[NftObject], n: int) -> tuple[str, str] | None:
    """(port, SNAT address) of ENI n if its chains and dispatch are complete."""
    targets: dict[str, set[str]] = {}
    for item in objects:
        m = item.get("map")
        if m:
            for key, verdict in m.get("elem", []):
                targets.setdefault(verdict.get("jump", {}).get("target"), set()).add(key)
    address = snat_address(objects, n)
    found = [targets.get(c, set()) for c in sorted(eni_chains(n))]
    if address is None or len(found[0]) != 1 or not all(f == found[0] for f in found):
        return None
    return next(iter(found[0])), address


def numbered(name: str, prefix: str) -> int | None:
    """n of an nft object named `<prefix><n>`, else None."""
    tail = name[len(prefix):]
    return int(tail) if name.startswith(prefix) and tail.isdigit() else None


def plane_enis(objects: list[NftObject]) -> list[int]:
    """The ENIs that have chains in a plane."""
    return sorted(n for item in objects if "chain" in item
                  if (n := numbered(item["chain"]["name"], "out")) is not None)


def port_guard_script(names: Names, n: int, size: int, port: str) -> str:
    """ENI n's port guard (its range: `size` ports), dispatched from its port `port`."""
    t = f"ip {names.port_guard_table}"
    # The rejected packet carries mark n and fwmark_reflect (ensure_vpc_plane) gives the reply
    # the same mark, so the reset/ICMP made here takes ENI n's table back to the worker.
    count = f"{{ ip daddr . meta l4proto . th dport ct count over {size} }}"
    return "\n".join([
        f"add table {t}",
        f"add map {t} guard_link {{ type ifname : verdict; }}",
        (f"add chain {t} forward {{ type filter hook forward priority filter - 1; "
         f"policy accept; }}"),
        f"flush chain {t} forward",
        f"add rule {t} forward ct state new iifname vmap @guard_link",
        (f"add set {t} dst{n} {{ type ipv4_addr . inet_proto . inet_service; size 65535; "
         f"flags dynamic; }}"),
        f"add counter {t} refused{n}",
        f"add chain {t} guard{n}",
        (f"add rule {t} guard{n} meta l4proto tcp add @dst{n} {count} meta mark set {n} "
         f'counter name "refused{n}" reject with tcp reset'),
        (f"add rule {t} guard{n} meta l4proto udp add @dst{n} {count} meta mark set {n} "
         f'counter name "refused{n}" reject with icmp type port-unreachable'),
        f'add element {t} guard_link {{ "{port}" : jump guard{n} }}',
    ])


def port_guard_removal(names: Names, n: int, objects: list[NftObject]) -> str:
    """Commands removing ENI n's port guard from the guard table (read as `objects`)."""
    t = f"ip {names.port_guard_table}"
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        for key, verdict in (m.get("elem", []) if m else []):
            if verdict.get("jump", {}).get("target") == f"guard{n}":
                lines.append(f'delete element {t} guard_link {{ "{key}" }}')
    present = {kind: {item[kind]["name"] for item in objects if kind in item}
               for kind in ("chain", "set", "counter")}
    if f"guard{n}" in present["chain"]:
        lines += [f"flush chain {t} guard{n}", f"delete chain {t} guard{n}"]
    if f"dst{n}" in present["set"]:
        lines.append(f"delete set {t} dst{n}")
    if f"refused{n}" in present["counter"]:
        lines.append(f"delete counter {t} refused{n}")
    return "\n".join(lines)
