"""The one naming scheme for every kernel object a server makes. Everything starts with
`lp<instance>` (instance: a short id kept in the data dir), so names are parsed back to their
owner and `lambdaplane clean` removes exactly this server's objects. Interface names are at most
15 characters (IFNAMSIZ)."""
from __future__ import annotations

from dataclasses import dataclass


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
    def uplink_host(self) -> str:
        """Uplink veth end in the host's root namespace."""
        return f"{self.prefix}up"

    # nftables, cgroups
    @property
    def nft_table(self) -> str:
        return self.prefix

    @property
    def cgroup_dir(self) -> str:
        """Relative to each cgroup v1 controller mount (memory, pids)."""
        return f"lambdaplane/{self.prefix}"
