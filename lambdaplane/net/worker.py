"""The worker network namespace (`lp<i>-w`) and the optional uplink out of the host.

Owns: the worker netns itself (lo, forwarding, strict reverse-path filtering), its nftables
table (sandbox isolation, anti-spoofing), the IPv4 address plan of sandboxes, and — when
`settings.uplink` — the uplink veth to the root namespace plus the root-namespace nft table that
masquerades sandbox traffic and keeps it away from the host's own networks. Every function here
does kernel work and runs on the NetThread.

Address plan: sandbox in slot N owns 100.64.0.0 + 2 + N (/32, CGNAT space). The worker side of
*every* sandbox veth holds the same /32 gateway 169.254.1.1 plus a /32 route to its sandbox, so a
single Runtime API listener serves all sandboxes and sees each one's own source address.

Uplink: the worker SNATs sandbox traffic to its end of a /30 link subnet (169.254.L.0/30, L
derived from the instance id) and the root namespace masquerades that /30 out of the host. The
double NAT keeps 100.64.0.0/10 out of the host's routing table (hosts use CGNAT space, e.g. VPN
clients, and several instances may run side by side)."""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from . import host_sysctls, nft, ns
from .names import UPLINK_WORKER_IFNAME, Names
from .netlink import Netlink

GATEWAY = "169.254.1.1"
RUNTIME_API_PORT = 9001
SANDBOX_NET = ipaddress.IPv4Network("100.64.0.0/10")
# What a sandbox must never reach through the uplink: the host's own and every private network.
BLOCKED_DESTINATIONS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                        "169.254.0.0/16", "127.0.0.0/8", "224.0.0.0/4", "0.0.0.0/8",
                        "240.0.0.0/4")
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IP_FORWARD = "net.ipv4.ip_forward"
# The worker namespace's own sysctls (setup makes them, reconcile_worker puts them back):
# forwarding; sandbox veths inherit a strict `default` rp_filter while `all` stays 0, because
# replies from VPC addresses arrive on Hyperplane transit links, where no route points back
# (effective rp_filter = max(all, dev); the nft fib rule also drops spoofed sources);
# sandboxes get no IPv6 (dropped in nft too): no router solicitations etc.
WORKER_SYSCTLS = (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                  ("net.ipv4.conf.default.rp_filter", "1"),
                  ("net.ipv6.conf.default.disable_ipv6", "1"))
_COMMENT = re.compile(r'^\s*comment "([0-9a-f]+)"', re.M)


def sandbox_address(slot: int) -> str:
    """The /32 address of the sandbox in `slot` (skips .0 and .1 of the CGNAT block)."""
    address = SANDBOX_NET.network_address + 2 + slot
    if address not in SANDBOX_NET or slot < 0:
        raise ValueError(f"sandbox slot {slot} is outside the address plan")
    return str(address)


def sandbox_slot(address: str) -> int | None:
    """The slot whose sandbox owns `address` (sandbox_address's inverse), None if none does."""
    offset = int(ipaddress.IPv4Address(address)) - int(SANDBOX_NET.network_address) - 2
    return offset if 0 <= offset and ipaddress.IPv4Address(address) in SANDBOX_NET else None


@dataclass(frozen=True)
class UplinkPlan:
    """The /30 between the worker and the host: .1 on the host end, .2 on the worker end."""
    network: ipaddress.IPv4Network

    @classmethod
    def for_instance(cls, instance: str) -> "UplinkPlan":
        # 169.254.2.0 – 169.254.167.255: clear of the gateway /24 (169.254.1.x) and of
        # 169.254.169.254 (cloud metadata); 166 * 64 = 10,624 possible /30s.
        n = int.from_bytes(hashlib.sha256(instance.encode()).digest()[:4], "big") % (166 * 64)
        base = ipaddress.IPv4Address("169.254.2.0") + 4 * n
        return cls(ipaddress.IPv4Network(f"{base}/30"))

    @property
    def host_address(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def worker_address(self) -> str:
        return str(self.network.network_address + 2)


def worker_ruleset(names: Names, uplink: bool, api_port: int = RUNTIME_API_PORT) -> str:
    """The worker's nft table: sandboxes may talk to the Runtime API and (if enabled) out of
    the uplink; nothing else — not to each other, not with a forged source address, no IPv6.
    `egress_ifnames` lets other parts (VPC steering) allow more exits without editing this."""
    table = names.nft_table
    sandboxes = names.sandbox_veth_glob  # every sandbox veth: lp<i>s<slot>
    blocked = ", ".join(BLOCKED_DESTINATIONS)
    uplink_rules = ""
    nat_chain = ""
    if uplink:
        uplink_rules = (f'        iifname {sandboxes} oifname "{UPLINK_WORKER_IFNAME}" '
                        f"ip daddr {{ {blocked} }} drop\n"
                        f'        iifname {sandboxes} oifname "{UPLINK_WORKER_IFNAME}" accept\n')
        nat_chain = (f"    chain postrouting {{\n"
                     f"        type nat hook postrouting priority srcnat; policy accept;\n"
                     f'        oifname "{UPLINK_WORKER_IFNAME}" ip saddr {SANDBOX_NET} masquerade\n'
                     f"    }}\n")
    body = (
        f"    set egress_ifnames {{ type ifname; }}\n"
        # the IPv6 addresses of steered sandboxes of dual-stack functions
        # (net/hyperplane/ipv6.py): their IPv6 is let in, every other sandbox's dropped
        f"    set ipv6_sandboxes {{ type ipv6_addr; }}\n"
        f"    chain prerouting {{\n"
        f"        type filter hook prerouting priority raw; policy accept;\n"
        f"        iifname {sandboxes} meta nfproto ipv6 ip6 saddr != @ipv6_sandboxes drop\n"
        # strict reverse path: the source must be routed back out of the interface it came in
        # on; with one /32 route per sandbox this rejects every forged source address.
        f"        iifname {sandboxes} fib saddr . iif oif missing drop\n"
        # Runtime API connections are accepted statelessly below, so they need no conntrack
        # entry: without notrack each environment leaves one in TIME_WAIT for 120 s after it
        # is destroyed (thousands under a cold-start load; tests/soak counts them).
        f"        iifname {sandboxes} ip daddr {GATEWAY} tcp dport {api_port} notrack\n"
        f"    }}\n"
        f"    chain output_raw {{\n"
        f"        type filter hook output priority raw; policy accept;\n"
        f"        ip saddr {GATEWAY} tcp sport {api_port} notrack\n"
        f"    }}\n"
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy accept;\n"
        f"        iifname {sandboxes} ip daddr {GATEWAY} tcp dport {api_port} accept\n"
        f"        iifname {sandboxes} ct state established,related accept\n"
        f"        iifname {sandboxes} drop\n"
        f'        iifname "{UPLINK_WORKER_IFNAME}" ct state established,related accept\n'
        f'        iifname "{UPLINK_WORKER_IFNAME}" drop\n'
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy drop;\n"
        f"        ct state established,related accept\n"
        f"        iifname {sandboxes} oifname {sandboxes} drop\n"
        f"{uplink_rules}"
        f"        iifname {sandboxes} oifname @egress_ifnames accept\n"
        # Replies on an extra exit that the worker does not track (Hyperplane transits:
        # net/hyperplane.py's steering skips conntrack here; its plane tracks those flows and
        # lets only replies back). Tracked traffic from these links gets only the rule above.
        f"        iifname @egress_ifnames oifname {sandboxes} ct state untracked accept\n"
        f"    }}\n"
        f"{nat_chain}")
    # the fingerprint of what the table should hold, so reconcile_worker can tell a table made
    # from another ruleset (or edited by hand) from this one without parsing it
    fingerprint = ruleset_fingerprint(body)
    return (f"table inet {table}\n"
            f"delete table inet {table}\n"
            f"table inet {table} {{\n"
            f'    comment "{fingerprint}"\n'
            f"{body}"
            f"}}\n")


def ruleset_fingerprint(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _chain_shape(text: str) -> dict[str, int]:
    """Chain name → how many rules it holds, in a ruleset script or `nft list` output (one rule
    a line in both): what a hand edit inside the table (a rule or chain deleted) changes while
    the table's fingerprint comment stays."""
    shape: dict[str, int] = {}
    chain: str | None = None
    for line in (raw.split(" # handle")[0].strip() for raw in text.splitlines()):
        if line.startswith("chain ") and line.endswith("{"):
            chain = line.split()[1]
            shape[chain] = 0
        elif line == "}":
            chain = None
        elif chain is not None and line and not line.startswith("type "):
            shape[chain] += 1
    return shape


def reconcile_worker(names: Names, uplink: bool, api_port: int = RUNTIME_API_PORT,
                     host_record: Path | None = None) -> list[str]:
    """Put back what drifted in the worker namespace: its sysctls, `lo` up, and its nft table
    (applied again when missing or not the one this ruleset makes: its fingerprint). The
    namespace itself is made by the execution environments' start and its name given back by
    service/kernel_watch.py; absent, nothing is done here. The sets' elements (exits, IPv6
    sandboxes) a re-applied table loses are the Hyperplane reconcile's to put back, after this.
    With `uplink`: the uplink veth and the root namespace's table too (_reconcile_uplink), and
    the host's forwarding switched on again when it was turned off under the running server
    (recorded in `host_record` first, net/host_sysctls.py; without a record it is left alone)."""
    netns = names.worker_netns
    if not ns.exists(netns):
        return []
    changes: list[str] = []
    with ns.entered(netns):
        for key, value in WORKER_SYSCTLS:
            if host_sysctls.read(key) != value:
                ns.set_sysctl(key, value)
                changes.append(f"set {key}={value} in {netns}")
    with Netlink(netns) as nl:
        lo = nl.link("lo")
        if lo is not None and not lo.up:
            nl.set_up(lo.index)
            changes.append(f"set lo up in {netns}")
    script = worker_ruleset(names, uplink, api_port)
    if not _table_matches(script, nft.list_text(f"table inet {names.nft_table}", netns)):
        nft.apply(script, netns)
        changes.append(f"applied the isolation table in {netns}")
    if uplink:
        changes += _reconcile_uplink(names)
        if host_record is not None and host_sysctls.ensure(host_record, IP_FORWARD, "1"):
            changes.append(f"set {IP_FORWARD}=1 in the root namespace")
    return changes


def _table_matches(script: str, current: str | None) -> bool:
    """Whether the listed table (`current`, None: absent) is the one `script` makes: its
    fingerprint comment, and no rule or chain deleted by hand."""
    found = _COMMENT.search(current or "")
    return found is not None and script.find(f'comment "{found.group(1)}"') >= 0 and \
        _chain_shape(current or "") == _chain_shape(script)


def _reconcile_uplink(names: Names) -> list[str]:
    """Put back the uplink as WorkerNet._setup_uplink makes it: the veth (both ends go
    together), its /30 on each end, both ends up, the worker's default route through it, and
    the root namespace's table (by fingerprint; the host's attached networks read anew). The
    host's forwarding is reconcile_worker's (it needs the record)."""
    plan = UplinkPlan.for_instance(names.instance)
    netns, host_end = names.worker_netns, names.uplink_host
    changes: list[str] = []
    with Netlink() as root:
        link = root.link(host_end)
        if link is None:
            with Netlink(netns) as nl:  # a worker end left alone (moved in by hand): replaced
                nl.delete_link(UPLINK_WORKER_IFNAME)
            root.add_veth(host_end, UPLINK_WORKER_IFNAME, peer_netns=netns)
            changes.append(f"made the uplink {host_end}")
        if (plan.host_address, 30) not in root.addresses(host_end):
            root.add_address(host_end, plan.host_address, 30)
            changes.append(f"added {plan.host_address}/30 to {host_end}")
        if link is None or not link.up:
            root.set_up(host_end)
            if link is not None:
                changes.append(f"set {host_end} up")
    with Netlink(netns) as nl:
        inner = nl.link(UPLINK_WORKER_IFNAME)
        assert inner is not None  # the veth's peer, in the worker since it was made
        if (plan.worker_address, 30) not in nl.addresses(inner.index):
            nl.add_address(inner.index, plan.worker_address, 30)
            changes.append(f"added {plan.worker_address}/30 to {UPLINK_WORKER_IFNAME} "
                           f"in {netns}")
        if not inner.up:
            nl.set_up(inner.index)
            changes.append(f"set {UPLINK_WORKER_IFNAME} up in {netns}")
        if ("", 0, inner.index, plan.host_address) not in nl.routes():
            nl.add_route("0.0.0.0/0", inner.index, gateway=plan.host_address)
            changes.append(f"added the default route via {plan.host_address} in {netns}")
    script = host_ruleset(names, plan, host_attached_networks(names))
    if not _table_matches(script, nft.list_text(f"table inet {names.nft_table}", None)):
        nft.apply(script, None)
        changes.append(f"applied the uplink table {names.nft_table} in the root namespace")
    return changes


def host_ruleset(names: Names, plan: UplinkPlan, host_networks: tuple[str, ...] = (),
                 table: str = "", host_link: str = "") -> str:
    """The root-namespace table: masquerade what comes from the uplink and keep it off the
    host itself, off the networks the host is attached to, and off every private, CGNAT,
    link-local, loopback and multicast range. `table`/`host_link` (default: the worker's
    uplink) serve the VPC gateways' uplink too (net/host_internet.py)."""
    table = table or names.nft_table
    blocked = ", ".join(BLOCKED_DESTINATIONS + host_networks)
    up = f'"{host_link or names.uplink_host}"'
    body = (
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy accept;\n"
        f"        iifname {up} ct state established,related accept\n"
        f"        iifname {up} drop\n"
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy accept;\n"
        f"        iifname {up} meta nfproto ipv6 drop\n"
        f"        iifname {up} ip daddr {{ {blocked} }} drop\n"
        f"        oifname {up} ct state established,related accept\n"
        f"        oifname {up} drop\n"
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        ip saddr {plan.network} oifname != {up} masquerade\n"
        f"    }}\n")
    # its fingerprint, as the worker's table has one: reconcile_worker's drift check
    return (f"table inet {table}\n"
            f"delete table inet {table}\n"
            f"table inet {table} {{\n"
            f'    comment "{ruleset_fingerprint(body)}"\n'
            f"{body}"
            f"}}\n")


@dataclass
class WorkerNet:
    """Builds and removes the worker namespace (and uplink). Runs on the NetThread."""
    names: Names
    uplink: bool
    runtime_api_port: int = RUNTIME_API_PORT
    # set by setup(): whether we switched the root namespace's forwarding on (put back on stop)
    enabled_host_forwarding: bool = False
    # where the host's sysctls we change are recorded before the change (net/host_sysctls.py;
    # in the data dir, so a SIGKILLed server's change is put back too); None: not recorded
    host_record: Path | None = None

    @property
    def netns(self) -> str:
        return self.names.worker_netns

    @property
    def uplink_plan(self) -> UplinkPlan:
        return UplinkPlan.for_instance(self.names.instance)

    def setup(self) -> None:
        if not self.uplink and self.host_record is not None:
            host_sysctls.restore(self.host_record)  # left by a killed run with the uplink
        ns.create(self.netns)
        with ns.entered(self.netns):
            for key, value in WORKER_SYSCTLS:  # what each is for: WORKER_SYSCTLS
                ns.set_sysctl(key, value)
        with Netlink(self.netns) as nl:
            nl.set_up("lo")
        if self.uplink:
            self._setup_uplink()
        nft.apply(worker_ruleset(self.names, self.uplink, self.runtime_api_port), self.netns)

    def _setup_uplink(self) -> None:
        plan = self.uplink_plan
        with Netlink() as root:
            if root.index(self.names.uplink_host) is None:
                root.add_veth(self.names.uplink_host, UPLINK_WORKER_IFNAME, peer_netns=self.netns)
            root.add_address(self.names.uplink_host, plan.host_address, 30)
            root.set_up(self.names.uplink_host)
        with Netlink(self.netns) as nl:
            nl.add_address(UPLINK_WORKER_IFNAME, plan.worker_address, 30)
            nl.set_up(UPLINK_WORKER_IFNAME)
            nl.add_route("0.0.0.0/0", UPLINK_WORKER_IFNAME, gateway=plan.host_address)
        nft.apply(host_ruleset(self.names, plan, host_attached_networks(self.names)), None)
        if self.host_record is not None:
            self.enabled_host_forwarding = host_sysctls.change(self.host_record, IP_FORWARD, "1")
        elif _IP_FORWARD.read_text().strip() != "1":
            _IP_FORWARD.write_text("1")
            self.enabled_host_forwarding = True

    def teardown(self) -> None:
        """Remove everything setup() made; safe to call on a half-built or absent worker."""
        if self.uplink or self.enabled_host_forwarding:
            nft.delete_table("inet", self.names.nft_table, None)
            with Netlink() as root:
                root.delete_link(self.names.uplink_host)
            if self.host_record is not None:  # set at setup, or again by the drift repair
                host_sysctls.restore(self.host_record, (IP_FORWARD,))
                self.enabled_host_forwarding = False
            elif self.enabled_host_forwarding:
                _IP_FORWARD.write_text("0")
                self.enabled_host_forwarding = False
        # the worker's table, links and routes all go with its namespace
        with contextlib.suppress(FileNotFoundError):
            ns.delete(self.netns)


def host_attached_networks(names: Names) -> tuple[str, ...]:
    """The root namespace's directly attached IPv4 networks that no blocked range covers
    (e.g. a public or TEST-NET LAN): sandboxes must not reach the host's neighbours either."""
    blocked = [ipaddress.IPv4Network(b) for b in BLOCKED_DESTINATIONS]
    found: set[str] = set()
    with open("/proc/net/route") as f:  # the main table, no pyroute2 needed for a read
        for line in f.readlines()[1:]:
            iface, dest, gateway, _flags, _ref, _use, _metric, mask = line.split()[:8]
            if names.owns(iface) or int(gateway, 16) != 0 or int(mask, 16) == 0:
                continue
            net = ipaddress.IPv4Network(
                (str(ipaddress.IPv4Address(bytes.fromhex(dest)[::-1])),
                 bin(int(mask, 16)).count("1")), strict=False)
            if not any(net.subnet_of(b) for b in blocked):
                found.add(str(net))
    return tuple(sorted(found))


def allow_egress(names: Names, ifname: str) -> None:
    """Let sandboxes forward out of `ifname` in the worker (e.g. a Hyperplane transit link)."""
    nft.apply(f'add element inet {names.nft_table} egress_ifnames {{ "{ifname}" }}',
              names.worker_netns)
