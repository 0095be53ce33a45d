"""EC2 Query actions of VPC flow logs (CreateFlowLogs, DescribeFlowLogs, DeleteFlowLogs):
parameters from the botocore model (api/query_xml.py), rules in service/flow_logs.py, the
model's output shapes out. Joined to api/ec2_api.py's action table by `ACTIONS`."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ec2_error
from ..service.flow_logs import DEFAULT_FORMAT, FlowLogs, Unsuccessful
from ..store.flow_logs import FlowLog
from . import query_xml

Handler = Callable[[Any, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _service(vpc: Any) -> FlowLogs:
    flow_logs = getattr(vpc, "flow_logs", None)
    if flow_logs is None:
        raise ec2_error("InvalidAction", "Flow logs are not available on this server.")
    return flow_logs


def flow_log_out(f: FlowLog) -> dict[str, Any]:
    return {"CreationTime": dt.datetime.fromtimestamp(f.created_ms / 1000, dt.UTC),
            "DeliverLogsStatus": "SUCCESS", "FlowLogId": f.id, "FlowLogStatus": "ACTIVE",
            "LogGroupName": f.log_group, "ResourceId": f.resource_id,
            "TrafficType": f.traffic_type, "LogDestinationType": "cloud-watch-logs",
            "LogDestination": f.destination, "DeliverLogsPermissionArn": f.permission_arn,
            "LogFormat": DEFAULT_FORMAT, "MaxAggregationInterval": f.interval_s,
            "Tags": [{"Key": k, "Value": v} for k, v in f.tags.items()]}


def _unsuccessful(items: list[Unsuccessful]) -> list[dict[str, Any]]:
    return [{"Error": {"Code": u.code, "Message": u.message}, "ResourceId": u.resource_id}
            for u in items]


async def create_flow_logs(vpc: Any, region: str, p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "ResourceIds", "ResourceType")
    service = _service(vpc)
    created, failed = service.create(region, p)
    if created and service.after_create is not None:
        await service.after_create()
    return {"ClientToken": p.get("ClientToken") or str(uuid.uuid4()), "FlowLogIds": created,
            "Unsuccessful": _unsuccessful(failed)}


async def describe_flow_logs(vpc: Any, region: str, p: dict[str, Any]) -> dict[str, Any]:
    flows = _service(vpc).describe(region, p.get("FlowLogIds") or [], p.get("Filter") or [])
    start = int(p["NextToken"]) if str(p.get("NextToken") or "").isdigit() else 0
    limit = p.get("MaxResults") or 1000
    page = flows[start:start + limit]
    token = str(start + limit) if start + limit < len(flows) else None
    return {"FlowLogs": [flow_log_out(f) for f in page], "NextToken": token}


async def delete_flow_logs(vpc: Any, region: str, p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "FlowLogIds")
    return {"Unsuccessful": _unsuccessful(_service(vpc).delete(region, p["FlowLogIds"]))}


ACTIONS: dict[str, Handler] = {
    "CreateFlowLogs": create_flow_logs, "DescribeFlowLogs": describe_flow_logs,
    "DeleteFlowLogs": delete_flow_logs,
}
