"""VPC flow logs as EC2 defines them: CreateFlowLogs / DescribeFlowLogs / DeleteFlowLogs for a
VPC, a subnet or a network interface, to a CloudWatch Logs group, with AWS's rules and errors
(a resource that does not exist or already has the same flow log is an `Unsuccessful` item,
not an error of the call). A flow log goes with its resource (`prune`).

Owns the flow-log rows (store/flow_logs.py) and which interfaces each flow log covers; the
records themselves are made by service/flow_collector.py. No HTTP and no kernel calls."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ec2_error
from ..store.db import Database
from ..store.ec2 import Ec2Store, Eni
from ..store.flow_logs import FlowLog, FlowLogStore
from .ec2_filters import check_names, matches
from .ec2_ids import new_id

RESOURCE_TYPES = {"VPC": ("vpc", "InvalidVpcID.NotFound", "vpc"),
                  "Subnet": ("subnet", "InvalidSubnetID.NotFound", "subnet"),
                  "NetworkInterface": ("eni", "InvalidNetworkInterfaceID.NotFound",
                                       "network interface")}
TRAFFIC_TYPES = ("ACCEPT", "REJECT", "ALL")
INTERVALS = (60, 600)
DEFAULT_FORMAT = ("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} "
                  "${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} "
                  "${log-status}")
FILTERS = ("deliver-log-status", "log-destination-type", "flow-log-id", "log-group-name",
           "resource-id", "traffic-type")


@dataclass(frozen=True)
class Unsuccessful:
    resource_id: str
    code: str
    message: str


class FlowLogs:
    def __init__(self, db: Database, account_id: str) -> None:
        self.db = db
        self.account_id = account_id
        self.store = FlowLogStore(db)
        self.ec2 = Ec2Store(db)
        # set by the collector: run after CreateFlowLogs so that the kernel counts from then on
        self.after_create: Callable[[], Awaitable[None]] | None = None

    # create ------------------------------------------------------------------------------
    def create(self, region: str, p: dict[str, Any]) -> tuple[list[str], list[Unsuccessful]]:
        resource_type = p.get("ResourceType") or ""
        if resource_type not in RESOURCE_TYPES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({resource_type}) for parameter ResourceType is invalid. "
                            f"Supported: VPC, Subnet, NetworkInterface")
        traffic = p.get("TrafficType")
        if traffic is None:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter TrafficType")
        if traffic not in TRAFFIC_TYPES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({traffic}) for parameter TrafficType is invalid.")
        destination_type = p.get("LogDestinationType") or "cloud-watch-logs"
        if destination_type != "cloud-watch-logs":
            raise ec2_error("InvalidParameterValue",
                            f"Value ({destination_type}) for parameter LogDestinationType is "
                            f"not supported here: only cloud-watch-logs")
        group = self._group_name(region, p.get("LogGroupName"), p.get("LogDestination"))
        interval = p.get("MaxAggregationInterval") or 600
        if interval not in INTERVALS:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({interval}) for parameter MaxAggregationInterval is "
                            f"invalid. Valid values are 60 and 600.")
        log_format = p.get("LogFormat")
        if log_format not in (None, "", DEFAULT_FORMAT):
            raise ec2_error("InvalidParameter",
                            "Custom LogFormat is not supported: only the default format "
                            "(version 2) is delivered.")
        tags: dict[str, str] = {}
        for spec in p.get("TagSpecifications") or []:
            if spec.get("ResourceType") in (None, "vpc-flow-log"):
                tags.update({t["Key"]: t.get("Value") or "" for t in spec.get("Tags") or []})
        created: list[str] = []
        failed: list[Unsuccessful] = []
        existing = self.store.all(region)
        destination = f"arn:aws:logs:{region}:{self.account_id}:log-group:{group}"
        with self.db.transaction():
            for resource_id in dict.fromkeys(p.get("ResourceIds") or []):
                problem = self._resource_problem(region, resource_type, resource_id)
                if problem is None and any(
                        f.resource_id == resource_id and f.traffic_type == traffic
                        and f.log_group == group for f in existing):
                    problem = Unsuccessful(resource_id, "FlowLogAlreadyExists",
                                           "Error. There is an existing Flow Log with the same "
                                           "configuration and log destination.")
                if problem is not None:
                    failed.append(problem)
                    continue
                flow = FlowLog(new_id("fl"), region, resource_id, resource_type, traffic, group,
                               destination, p.get("DeliverLogsPermissionArn"), int(interval),
                               int(time.time() * 1000), tags)
                self.store.add(flow)
                created.append(flow.id)
        return created, failed

    def _group_name(self, region: str, name: str | None, arn: str | None) -> str:
        if name and arn:
            raise ec2_error("InvalidParameter",
                            "Please only provide LogGroupName or only provide LogDestination.")
        if arn:
            parts = arn.split(":", 6)
            if len(parts) != 7 or parts[:3] != ["arn", "aws", "logs"] or \
                    parts[5] != "log-group" or not parts[6].removesuffix(":*"):
                raise ec2_error("InvalidParameter",
                                f"LogDestination: {arn} is not a valid CloudWatch Logs "
                                f"log group ARN.")
            if parts[3] not in ("", region):
                raise ec2_error("InvalidParameter",
                                "LogDestination must be a log group in the same region.")
            return parts[6].removesuffix(":*")
        if not name:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter LogGroupName or "
                            "LogDestination")
        return name

    def _resource_problem(self, region: str, resource_type: str,
                          resource_id: str) -> Unsuccessful | None:
        prefix, code, noun = RESOURCE_TYPES[resource_type]
        if self._resource_exists(region, resource_type, resource_id):
            return None
        if not resource_id.startswith(prefix + "-"):
            return Unsuccessful(resource_id, code.replace(".NotFound", ".Malformed"),
                                f'Invalid id: "{resource_id}" (expecting "{prefix}-...")')
        return Unsuccessful(resource_id, code, f"The {noun} ID '{resource_id}' does not exist")

    def _resource_exists(self, region: str, resource_type: str, resource_id: str) -> bool:
        found: object
        if resource_type == "VPC":
            found = self.ec2.vpc(resource_id)
        elif resource_type == "Subnet":
            found = self.ec2.subnet(resource_id)
        else:
            found = self.ec2.eni(resource_id)
        return found is not None and getattr(found, "region", region) == region

    # describe / delete --------------------------------------------------------------------
    def describe(self, region: str, ids: list[str], filters: list[dict[str, Any]]) -> list[FlowLog]:
        check_names(filters, FILTERS)
        self.prune()
        out = []
        for f in self.store.all(region):
            if ids and f.id not in ids:
                continue
            attrs = {"deliver-log-status": ["SUCCESS"], "log-destination-type":
                     ["cloud-watch-logs"], "flow-log-id": [f.id], "log-group-name": [f.log_group],
                     "resource-id": [f.resource_id], "traffic-type": [f.traffic_type]}
            if matches(filters, attrs, f.tags):
                out.append(f)
        return out

    def delete(self, region: str, ids: Iterable[str]) -> list[Unsuccessful]:
        failed = []
        with self.db.transaction():
            for flow_id in ids:
                flow = self.store.get(flow_id)
                if flow is None or flow.region != region:
                    failed.append(Unsuccessful(flow_id, "InvalidFlowLogId.NotFound",
                                               "This flow log does not exist"))
                else:
                    self.store.delete(flow_id)
        return failed

    def prune(self) -> list[str]:
        """Delete the flow logs whose resource is gone (AWS deletes them with it)."""
        gone = [f.id for f in self.store.all()
                if not self._resource_exists(f.region, f.resource_type, f.resource_id)]
        if gone:
            with self.db.transaction():
                for flow_id in gone:
                    self.store.delete(flow_id)
        return gone

    # coverage -----------------------------------------------------------------------------
    def active(self) -> list[FlowLog]:
        self.prune()
        return self.store.all()

    @staticmethod
    def covers(flow: FlowLog, eni: Eni) -> bool:
        if flow.resource_type == "VPC":
            return eni.vpc_id == flow.resource_id
        if flow.resource_type == "Subnet":
            return eni.subnet_id == flow.resource_id
        return eni.id == flow.resource_id
