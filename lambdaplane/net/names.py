"""The one naming scheme for every kernel object a server makes. Everything starts with
`lp<instance>` (instance: a short id kept in the data dir), so names are parsed back to their
owner and `lambdaplane clean` removes exactly this server's objects. Interface names are at most
15 characters (IFNAMSIZ).

Also the numbering of Hyperplane ENIs (`n`: mark, routing tables, transit name) and its ranges,
so every module that makes, reads or allocates an ENI number agrees on them."""
from __future__ import annotations

from dataclasses import dataclass

# ENI numbers: Hyperplane ENIs from 1, a legacy (per-environment) ENI from LEGACY_ENI_FIRST.
ENI_FIRST = 1
LEGACY_ENI_FIRST = 50_001
ENI_LAST = 99_999
OUT_TABLE_BASE = 1000  # worker: routing table of ENI n's outbound path
BACK_TABLE_BASE = 100000  # VPC: routing table of ENI n's replies towards the worker


# The worker's end of the uplink, inside the worker namespace (net/worker.py).
UPLINK_WORKER_IFNAME = "up0"


def eni_mark(n: int) -> int:
    """The packet and connection mark of ENI n's flows."""
    return n


def out_table(n: int) -> int:
    return OUT_TABLE_BASE + n


def back_table(n: int) -> int:
    return BACK_TABLE_BASE + n


def is_legacy_eni(n: int) -> bool:
    return LEGACY_ENI_FIRST <= n <= ENI_LAST


def port_ifname(eni_id: str) -> str:
    """VPC-side link name of an interface: `e` + 14 of its 17 hex digits (IFNAMSIZ is 16)."""
    return "e" + eni_id.removeprefix("eni-")[:14]


def _number_after(prefix: str, name: str) -> int | None:
    tail = name[len(prefix):]
    return int(tail) if name.startswith(prefix) and tail.isdigit() else None


@dataclass(frozen=True)
class Names:
    instance: str

    @property
    def prefix(self) -> str:
        return f"lp{self.instance}"

    # namespaces
    @property
    def worker_netns(self) -> str:
        return f"{self.prefix}-w"

    def sandbox_netns(self, slot: int) -> str:
        return f"{self.prefix}-s{slot}"

    def vpc_netns(self, vpc_id: str) -> str:
        return f"{self.prefix}-{vpc_id}"

    def resource_netns(self, eni_id: str) -> str:
        return f"{self.prefix}-r-{eni_id}"

    # links (in the worker namespace unless said otherwise)
    def sandbox_veth(self, slot: int) -> str:
        return f"{self.prefix}s{slot}"

    def transit_veth(self, eni: int) -> str:
        """Worker end of Hyperplane ENI `eni`: the peer of the ENI's port in its VPC netns."""
        return f"{self.prefix}t{eni}"

    @property
    def sandbox_veth_glob(self) -> str:
        """An nft wildcard (quoted) matching every sandbox veth."""
        return f'"{self.prefix}s*"'

    def gateway_veth(self, vpc_id: str) -> str:
        """Internet end of VPC `vpc_id`'s internet-gateway link (in the --internet-netns)."""
        return f"{self.prefix}g{vpc_id.removeprefix('vpc-')[:9]}"

    @property
    def transit_veth_glob(self) -> str:
        """An nft wildcard (quoted) matching every transit."""
        return f'"{self.prefix}t*"'

    @property
    def uplink_host(self) -> str:
        """Uplink veth end in the host's root namespace."""
        return f"{self.prefix}up"

    @property
    def host_internet_netns(self) -> str:
        """The VPC gateways' internet side made by the server itself when it has no
        --internet-netns: its way out is the host's uplink (net/host_internet.py)."""
        return f"{self.prefix}-uplink"

    @property
    def host_internet_link(self) -> str:
        """Root-namespace end of the link out of host_internet_netns."""
        return f"{self.prefix}ug"

    @property
    def host_internet_table(self) -> str:
        """nft table (inet) of that link: in the root namespace and in host_internet_netns."""
        return f"{self.nft_table}-ug"

    # nftables, cgroups
    @property
    def nft_table(self) -> str:
        return self.prefix

    @property
    def plane_table(self) -> str:
        """The Hyperplane plane table in each VPC namespace (net/hyperplane/plane.py)."""
        return f"{self.nft_table}-hp"

    @property
    def steer_table(self) -> str:
        """The steering table in the worker namespace (net/hyperplane/steering.py)."""
        return f"{self.nft_table}-steer"

    @property
    def port_guard_table(self) -> str:
        """The port guard table in each VPC namespace (net/hyperplane/port_guard.py)."""
        return f"{self.nft_table}-ports"

    @property
    def old_plane_netns_prefix(self) -> str:
        """Namespaces of the Hyperplane layout before 2026-12-06 (docs/design.md)."""
        return f"{self.prefix}-h-"

    @property
    def netns_prefix(self) -> str:
        """Every namespace of this instance starts with it."""
        return f"{self.prefix}-"

    @property
    def vpc_netns_prefix(self) -> str:
        return self.vpc_netns("vpc-")

    @property
    def resource_netns_prefix(self) -> str:
        return self.resource_netns("")

    # parse-back: the owner of a name, None when the name is not of this kind (or instance)
    def owns(self, name: str) -> bool:
        """Whether a link, namespace or nft table name is this instance's."""
        return name.startswith(self.prefix)

    def owns_nft_table(self, table: str) -> bool:
        return table == self.nft_table or table.startswith(f"{self.nft_table}-")

    def transit_number(self, ifname: str) -> int | None:
        """n of the transit `ifname` (worker namespace), else None."""
        return _number_after(f"{self.prefix}t", ifname)

    def eni_of_far_end(self, netns: str, ifname: str) -> int | None:
        """n of the Hyperplane ENI whose port's far end is `ifname` in `netns`, else None."""
        return self.transit_number(ifname) if netns == self.worker_netns else None

    def sandbox_slot_of_veth(self, ifname: str) -> int | None:
        return _number_after(f"{self.prefix}s", ifname)

    def sandbox_slot_of_netns(self, netns: str) -> int | None:
        return _number_after(f"{self.prefix}-s", netns)

    def vpc_of_netns(self, netns: str) -> str | None:
        """The VPC id whose namespace is `netns`, else None."""
        vpc_id = netns.removeprefix(self.vpc_netns(""))
        return vpc_id if netns.startswith(self.vpc_netns_prefix) else None

    def eni_of_resource_netns(self, netns: str) -> str | None:
        eni_id = netns.removeprefix(self.resource_netns_prefix)
        return eni_id if netns.startswith(self.resource_netns_prefix) and eni_id else None

    def old_layout_number(self, netns: str, ifname: str) -> int | None:
        """n of an ENI whose port's far end, `e<n>`, is in a namespace of the old layout."""
        if not netns.startswith(self.old_plane_netns_prefix):
            return None
        return _number_after("e", ifname)

    # the EVPN fabric (net/fabric.py): one namespace per host, its underlay link's host end
    @property
    def fabric_netns(self) -> str:
        return f"{self.prefix}-fabric"

    @property
    def fabric_underlay_link(self) -> str:
        """Host end (in the host's namespace) of the veth whose far end holds the underlay
        address in fabric_netns."""
        return f"{self.prefix}fu"

    def is_fabric_netns(self, netns: str) -> bool:
        return netns == self.fabric_netns

    @property
    def cgroup_dir(self) -> str:
        """Relative to each cgroup v1 controller mount (memory, pids)."""
        return f"lambdaplane/{self.prefix}"


# Links inside the fabric namespace (net/fabric.py), one set per VPC segment (VNI). The
# namespace is this instance's alone, so the names carry the VNI, not the prefix.
VNI_MAX = (1 << 24) - 1
FABRIC_UNDERLAY_IFNAME = "under0"  # the fabric end of the underlay link


def fabric_vxlan_ifname(vni: int) -> str:
    return f"vx{vni}"


def fabric_bridge_ifname(vni: int) -> str:
    return f"br{vni}"


def fabric_port_ifname(vni: int) -> str:
    """Fabric end of the VPC's EVPN port (its VPC end is net/vpc.py's EVPN_LINK)."""
    return f"vp{vni}"


def vni_of_fabric_link(ifname: str) -> int | None:
    """The VNI of a fabric link (vx/br/vp + VNI), else None."""
    for prefix in ("vx", "br", "vp"):
        vni = _number_after(prefix, ifname)
        if vni is not None and 1 <= vni <= VNI_MAX:
            return vni
    return None
