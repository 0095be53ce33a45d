"""Subnet CIDR reservations with AWS's rules (Create/DeleteSubnetCidrReservation,
GetSubnetCidrReservations): an IPv4 range inside the subnet, `explicit` or `prefix`, not
overlapping another reservation. Addresses in a reservation are never picked automatically for
a new interface (service/interfaces.py asks `reserved_addresses`); asking for one explicitly
still works, as on AWS. A part of VpcService (service/vpc.py), given its Ec2Core."""
from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Subnet
from ..store.ec2_subnet_reservations import SubnetCidrReservation, SubnetReservationStore
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import new_id
from .ec2_tags import specified_tags
from . import ipv6_only
from .ipam import parse_cidr

RESERVATION_TYPES = ("prefix", "explicit")


class SubnetReservations:
    """The subnet CIDR reservation part of VpcService."""

    def __init__(self, core: Ec2Core, reservations: SubnetReservationStore) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.reservations = reservations

    def reserved_addresses(self, subnet: Subnet) -> set[str]:
        """Every address of the subnet's reservations (left out of automatic assignment)."""
        out: set[str] = set()
        for r in self.reservations.all():
            if r.subnet_id == subnet.id:
                out |= {str(ip) for ip in ipaddress.IPv4Network(r.cidr)}
        return out

    def delete_subnet_reservations(self, subnet: Subnet) -> None:
        """In DeleteSubnet's transaction: its reservations go with it."""
        for r in self.reservations.all():
            if r.subnet_id == subnet.id:
                self.reservations.delete(r.id)
                self.store.delete_tags(r.id)

    def reservation_taggable_ids(self, region: str) -> set[str]:
        subnets = {s.id for s in self.store.subnets(region)}
        return {r.id for r in self.reservations.all() if r.subnet_id in subnets}

    async def create_subnet_cidr_reservation(self, region: str,
                                             p: dict[str, Any]) -> SubnetCidrReservation:
        self.core.ensure_region(region)
        for name in ("SubnetId", "Cidr", "ReservationType"):
            if not p.get(name):
                raise ec2_error("MissingParameter", f"The request must contain the parameter "
                                                    f"{name[0].lower() + name[1:]}")
        subnet = self.core.subnet(region, p["SubnetId"])
        kind = p["ReservationType"]
        if kind not in RESERVATION_TYPES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({kind}) for parameter reservationType is invalid. Valid "
                            f"values: {', '.join(RESERVATION_TYPES)}.")
        if ":" in p["Cidr"]:
            raise ec2_error("InvalidParameterValue",  # [?] no IPv6 here yet
                            "IPv6 reservations are not supported by lambdaplane yet")
        ipv6_only.refuse_ipv4(subnet, "an IPv4 subnet CIDR reservation")
        net = parse_cidr(p["Cidr"], "cidr")
        if not net.subnet_of(ipaddress.IPv4Network(subnet.cidr)):
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"The CIDR {net} is not within the CIDR {subnet.cidr} of subnet "
                            f"{subnet.id}")
        for other in self.reservations.all():
            if other.subnet_id == subnet.id and net.overlaps(ipaddress.IPv4Network(other.cidr)):
                raise ec2_error("InvalidParameterValue",  # [?] wording
                                f"The CIDR {net} overlaps the reservation {other.id} "
                                f"({other.cidr})")
        reservation = SubnetCidrReservation(new_id("scr"), subnet.id, str(net), kind,
                                            p.get("Description") or "")
        with self.db.transaction():
            self.reservations.add(reservation)
            self.store.set_tags(reservation.id,
                                specified_tags(p.get("TagSpecifications"),
                                                "subnet-cidr-reservation"))
        return reservation

    async def delete_subnet_cidr_reservation(self, region: str, reservation_id: str | None
                                             ) -> SubnetCidrReservation:
        self.core.ensure_region(region)
        if not reservation_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter subnetCidrReservationId")
        subnets = {s.id for s in self.store.subnets(region)}
        found = next((r for r in self.reservations.all()
                      if r.id == reservation_id and r.subnet_id in subnets), None)
        if found is None:
            raise ec2_error("InvalidSubnetCidrReservationID.NotFound",  # [?] code
                            f"The subnet CIDR reservation ID '{reservation_id}' does not exist")
        with self.db.transaction():
            self.reservations.delete(found.id)
            self.store.delete_tags(found.id)
        return found

    def get_subnet_cidr_reservations(self, region: str, subnet_id: str | None,
                                     filters: list[dict[str, Any]]) -> list[SubnetCidrReservation]:
        self.core.ensure_region(region)
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.core.subnet(region, subnet_id)
        check_names(filters, ["reservationType", "subnet-id", "owner-id"])
        tags = self.store.tags()
        return [r for r in self.reservations.all() if r.subnet_id == subnet.id and matches(
            filters, {"reservationType": [r.reservation_type], "subnet-id": [r.subnet_id],
                      "owner-id": [self.core.settings.account_id]},
            tags.get(r.id, {}))]
