"""AWS's regions' availability zones: their names and zone ids (use1-az1, …) as AWS lists
them, DescribeAvailabilityZones' filters, the zone a CreateSubnet names and the zone of a stored
subnet. Pure functions of the region; service/vpc.py serves them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Subnet
from .ec2_filters import check_names, matches

_ZONE_COUNT = {"us-east-1": 6, "us-west-2": 4, "ap-northeast-2": 4}
# Regions whose zones are not a, b, c… numbered in order: (letter, zone id number), as AWS
# lists them (the letter ↔ id mapping differs between AWS accounts; this is a common one).
_ZONE_LETTERS = {"ap-northeast-1": (("a", 4), ("c", 1), ("d", 2)),
                 "ca-central-1": (("a", 1), ("b", 2), ("d", 4))}
_DIRECTIONS = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
               "northeast": "ne", "southeast": "se", "northwest": "nw", "southwest": "sw"}


@dataclass(frozen=True)
class Zone:
    name: str
    zone_id: str
    region: str


def zones(region: str) -> list[Zone]:
    parts = region.split("-")
    abbr = parts[0] + "".join(_DIRECTIONS.get(p, p[:1]) for p in parts[1:-1]) + parts[-1]
    letters = _ZONE_LETTERS.get(region) or \
        tuple((chr(ord("a") + i), i + 1) for i in range(_ZONE_COUNT.get(region, 3)))
    return [Zone(f"{region}{letter}", f"{abbr}-az{number}", region) for letter, number in letters]


def availability_zones(region: str, names: list[str], ids: list[str],
                       filters: list[dict[str, Any]]) -> list[Zone]:
    check_names(filters, ["zone-name", "zone-id", "region-name", "state", "zone-type"])
    out = []
    for z in zones(region):
        if names and z.name not in names or ids and z.zone_id not in ids:
            continue
        attrs = {"zone-name": [z.name], "zone-id": [z.zone_id], "region-name": [region],
                 "state": ["available"], "zone-type": ["availability-zone"]}
        if matches(filters, attrs, {}):
            out.append(z)
    for n in names:
        if n not in {z.name for z in zones(region)}:
            raise ec2_error("InvalidParameterValue",
                            f"Invalid availability zone: [{n}]")
    return out


def pick_zone(region: str, name: str | None, zone_id: str | None) -> Zone:
    all_zones = zones(region)
    if not name and not zone_id:
        return all_zones[0]  # AWS picks one for you [?]: the first is predictable
    for z in all_zones:
        if z.name == name or z.zone_id == zone_id:
            return z
    raise ec2_error("InvalidParameterValue",
                    f"Value ({name or zone_id}) for parameter availabilityZone is invalid. "
                    "Subnets can currently only be created in the following availability "
                    f"zones: {', '.join(z.name for z in all_zones)}.")


def zone_of(subnet: Subnet) -> Zone:
    found = next((z for z in zones(subnet.region) if z.name == subnet.az), None)
    if found is None:  # stored when this region's zones were listed otherwise
        abbr = zones(subnet.region)[0].zone_id.split("-")[0]
        found = Zone(subnet.az, f"{abbr}-az{ord(subnet.az[-1]) - ord('a') + 1}",
                     subnet.region)
    return found
