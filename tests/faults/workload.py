"""The crash-recovery workload: threads that drive a live server through boto3 while it may be
SIGKILLed at any moment, writing every acknowledged change to a `Ledger`.

- churn: create a function, invoke it (a cold start), update its configuration and its code
  (each retires its environments), invoke again, delete it.
- events: Event invocations of the long-lived `ev-*` functions (their 202 request ids are
  recorded), now and then an Environment update of one of them (more cold starts).
- sync: RequestResponse invocations of the `ev-*` functions, checking each answer.
- ec2: a VPC, a subnet, a security group with rules, a network interface; then revoke and
  delete them again, and first of all delete whatever an earlier trial's kill left behind.
- vpcfn (when VPC functions exist): a function attached to a subnet + group made by ec2 calls.

A request whose connection fails before the server could answer (EndpointConnectionError)
changed nothing; one whose answer was lost (reset, timeout) is recorded as unanswered."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from tests.faults.ledger import ABSENT, Ledger
from tests.harness import REGION, make_zip

EVENT_FUNCTIONS = ("ev-0", "ev-1", "ev-vpc")  # ev-vpc is attached to a VPC
RUNTIME = "python3.11"
ROLE = "arn:aws:iam::000000000000:role/lambda"


def function_code(version: str) -> bytes:
    """Prints the request id (the proof an Event ran) and answers with it."""
    return make_zip({"app.py": (
        "import time\n"
        f"VERSION = {version!r}\n"
        "def handler(event, context):\n"
        "    print('RAN', context.aws_request_id, flush=True)\n"
        "    time.sleep(event.get('sleep', 0) if isinstance(event, dict) else 0)\n"
        "    return {'rid': context.aws_request_id, 'version': VERSION}\n")})


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def client(endpoint: str, service: str):
    # No retries at all: a retried create after a lost answer would hide what happened.
    cfg = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                 read_timeout=30, connect_timeout=3)
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test", config=cfg)


class Killed(Exception):
    """The server went away; the thread stops for this trial."""


@dataclass
class Counts:
    requests: int = 0
    acked: int = 0
    refused: int = 0  # the server answered with an error: nothing changed
    unanswered: int = 0
    cold_invokes: int = 0
    sync_invokes: int = 0
    event_invokes: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "Counts") -> None:
        for name in ("requests", "acked", "refused", "unanswered", "cold_invokes",
                     "sync_invokes", "event_invokes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


class Workload:
    def __init__(self, endpoint: str, ledger: Ledger, trial: int, rng: random.Random,
                 accepted_events: dict[str, str], vpc_config: dict[str, list[str]]) -> None:
        self.endpoint = endpoint
        self.ledger = ledger
        self.trial = trial
        self.seed = rng.randrange(1 << 30)
        self.accepted_events = accepted_events  # request id → function name
        self.vpc_config = vpc_config  # for the VPC functions the churn thread makes
        self.stopping = threading.Event()
        self.counts = Counts()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        bodies: list[Callable[[Counts, random.Random], None]] = [
            self._churn, self._vpc_churn, self._events, self._sync, self._ec2]
        for i, body in enumerate(bodies):
            t = threading.Thread(target=self._thread, args=(body, i), daemon=True,
                                 name=f"lp-fault-{body.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> Counts:
        self.stopping.set()
        for t in self._threads:
            t.join(60)
        return self.counts

    def _thread(self, body: Callable[[Counts, random.Random], None], i: int) -> None:
        counts = Counts()
        rng = random.Random(self.seed + i)
        try:
            body(counts, rng)
        except Killed:
            pass
        except Exception as e:  # noqa: BLE001 - reported as a finding, not swallowed
            counts.errors.append(f"{body.__name__}: {type(e).__name__}: {e}")
        with self._lock:
            self.counts.merge(counts)

    def _call(self, counts: Counts, fn: Callable[..., Any], change: tuple[str, str, Any] | None,
              **params: Any) -> Any:
        """One request. `change` = (kind, key, state) it makes if it succeeds. Returns the
        response, or None if the server refused it; raises Killed if the server is gone."""
        if self.stopping.is_set():
            raise Killed
        counts.requests += 1
        try:
            resp = fn(**params)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 and change is not None:  # answered, but maybe half-done
                self.ledger.unanswered_change(*change)
                counts.unanswered += 1
                counts.errors.append(f"{fn.__name__}: {e}")
                return None
            counts.refused += 1
            return None
        except EndpointConnectionError:
            raise Killed from None  # never reached the server
        except BotoCoreError:
            if change is not None:
                self.ledger.unanswered_change(*change)
                counts.unanswered += 1
            raise Killed from None
        if change is not None:
            self.ledger.acked_change(*change)
            counts.acked += 1
        return resp

    # -- churn: function lifecycle ---------------------------------------------------------------
    def _churn(self, counts: Counts, rng: random.Random, prefix: str = "churn",
               **create: Any) -> None:
        lam = client(self.endpoint, "lambda")
        i = 0
        while not self.stopping.is_set():
            name = f"{prefix}-{self.trial}-{i}"
            i += 1
            zip0, zip1 = function_code(f"{name}/0"), function_code(f"{name}/1")
            if self._call(counts, lam.create_function, ("function", name,
                          ("d0", code_sha256(zip0))), FunctionName=name, Runtime=RUNTIME,
                          Handler="app.handler", Role=ROLE, Code={"ZipFile": zip0},
                          Description="d0", **create) is None:
                continue
            self._wait_settled(counts, lam, name)
            self._invoke_checked(counts, lam, name, f"{name}/0")
            self._call(counts, lam.update_function_configuration,
                       ("function", name, ("d1", code_sha256(zip0))), FunctionName=name,
                       Description="d1", MemorySize=rng.choice((128, 192, 256)))
            self._wait_settled(counts, lam, name)
            self._call(counts, lam.update_function_code,
                       ("function", name, ("d1", code_sha256(zip1))), FunctionName=name,
                       ZipFile=zip1)
            self._wait_settled(counts, lam, name)
            self._invoke_checked(counts, lam, name, f"{name}/1")
            if rng.random() < 0.8:  # some stay, so later trials see more functions
                self._call(counts, lam.delete_function, ("function", name, ABSENT),
                           FunctionName=name)

    def _vpc_churn(self, counts: Counts, rng: random.Random) -> None:
        """The same lifecycle for VPC functions: Pending while the Hyperplane ENI is made,
        an attach at each cold start, the ENI released after the delete."""
        self._churn(counts, rng, "vpcfn", VpcConfig=self.vpc_config)

    def _wait_settled(self, counts: Counts, lam: Any, name: str) -> None:
        for _ in range(200):
            conf = self._call(counts, lam.get_function_configuration, None, FunctionName=name)
            if conf is None or (conf["State"] != "Pending"
                                and conf["LastUpdateStatus"] != "InProgress"):
                return
            time.sleep(0.05)

    def _invoke_checked(self, counts: Counts, lam: Any, name: str, version: str) -> None:
        resp = self._call(counts, lam.invoke, None, FunctionName=name, Payload=b"{}")
        if resp is None:
            return
        counts.sync_invokes += 1
        counts.cold_invokes += 1
        body = resp["Payload"].read()
        out = json.loads(body)
        if resp.get("FunctionError") or out.get("version") != version:
            counts.errors.append(f"invoke {name}: {resp.get('FunctionError')} {body[:300]!r}")

    # -- Event invocations -----------------------------------------------------------------------
    def _events(self, counts: Counts, rng: random.Random) -> None:
        lam = client(self.endpoint, "lambda")
        n = 0
        while not self.stopping.is_set():
            name = rng.choice(EVENT_FUNCTIONS)
            n += 1
            if n % 15 == 0:  # retires the warm environments: more cold starts
                value = f"{self.trial}-{n}"
                self._call(counts, lam.update_function_configuration,
                           ("env", name, value), FunctionName=name,
                           Environment={"Variables": {"GEN": value}})
                continue
            resp = self._call(counts, lam.invoke, None, FunctionName=name,
                              InvocationType="Event",
                              Payload=f'{{"sleep": {rng.choice((0, 0, 0.05, 0.2))}}}'.encode())
            if resp is not None and resp["StatusCode"] == 202:
                counts.event_invokes += 1
                with self._lock:
                    self.accepted_events[resp["ResponseMetadata"]["RequestId"]] = name
            time.sleep(rng.uniform(0, 0.01))

    def _sync(self, counts: Counts, rng: random.Random) -> None:
        lam = client(self.endpoint, "lambda")
        while not self.stopping.is_set():
            name = rng.choice(EVENT_FUNCTIONS)
            resp = self._call(counts, lam.invoke, None, FunctionName=name, Payload=b"{}")
            if resp is None:
                continue
            counts.sync_invokes += 1
            body = resp["Payload"].read()
            if resp.get("FunctionError") or resp["ResponseMetadata"]["RequestId"].encode() \
                    not in body:
                counts.errors.append(f"sync invoke {name}: {resp.get('FunctionError')} "
                                     f"{body[:300]!r}")

    # -- EC2 ---------------------------------------------------------------------------------------
    def _ec2(self, counts: Counts, rng: random.Random) -> None:
        ec2 = client(self.endpoint, "ec2")
        self._ec2_delete_leftovers(counts, ec2)
        i = 0
        while not self.stopping.is_set():
            tok = f"t{self.trial}-{i}"
            i += 1
            octet = rng.randrange(1, 250)
            vpc = self._call(counts, ec2.create_vpc, ("vpc", tok, f"10.{octet}.0.0/16"),
                             CidrBlock=f"10.{octet}.0.0/16", TagSpecifications=_tags("vpc", tok))
            if vpc is None:
                continue
            vpc_id = vpc["Vpc"]["VpcId"]
            cidr = f"10.{octet}.1.0/24"
            sub = self._call(counts, ec2.create_subnet, ("subnet", tok, cidr), VpcId=vpc_id,
                             CidrBlock=cidr, TagSpecifications=_tags("subnet", tok))
            try:
                sg = self._call(counts, ec2.create_security_group, ("sg", tok, vpc_id),
                                GroupName=f"g-{tok}", Description="fault test", VpcId=vpc_id,
                                TagSpecifications=_tags("security-group", tok))
            except Killed:
                self.ledger.possible("rules", tok, frozenset())
                raise
            if sub is None or sg is None:
                continue
            self.ledger.acked_change("rules", tok, frozenset())  # a new group has no ingress
            group_id, subnet_id = sg["GroupId"], sub["Subnet"]["SubnetId"]
            ports: set[int] = set()
            for port in (80, 443):
                ports.add(port)
                self._call(counts, ec2.authorize_security_group_ingress,
                           ("rules", tok, frozenset(ports)), GroupId=group_id,
                           IpPermissions=[_perm(port)])
            eni = self._call(counts, ec2.create_network_interface, ("eni", tok, tok),
                             SubnetId=subnet_id, Groups=[group_id],
                             TagSpecifications=_tags("network-interface", tok))
            ports.discard(443)
            self._call(counts, ec2.revoke_security_group_ingress,
                       ("rules", tok, frozenset(ports)), GroupId=group_id,
                       IpPermissions=[_perm(443)])
            if rng.random() < 0.3:
                continue  # left for a later trial to delete
            if eni is not None:
                self._call(counts, ec2.delete_network_interface, ("eni", tok, ABSENT),
                           NetworkInterfaceId=eni["NetworkInterface"]["NetworkInterfaceId"])
            self._delete_group(counts, ec2, tok, group_id)
            self._call(counts, ec2.delete_subnet, ("subnet", tok, ABSENT), SubnetId=subnet_id)
            self._call(counts, ec2.delete_vpc, ("vpc", tok, ABSENT), VpcId=vpc_id)

    def _delete_group(self, counts: Counts, ec2: Any, tok: str, group_id: str) -> None:
        try:
            deleted = self._call(counts, ec2.delete_security_group, ("sg", tok, ABSENT),
                                 GroupId=group_id)
        except Killed:
            self.ledger.possible("rules", tok, ABSENT)
            raise
        if deleted is not None:
            self.ledger.acked_change("rules", tok, ABSENT)

    def _ec2_delete_leftovers(self, counts: Counts, ec2: Any) -> None:
        """Delete what earlier trials left (the ledger holds what the server was seen to have)."""
        try:
            ids = ids_by_token(ec2)
        except BotoCoreError:  # a read cut by the kill (connection refused or closed mid-way)
            raise Killed from None
        for kind, delete, param in (
                ("eni", ec2.delete_network_interface, "NetworkInterfaceId"),
                ("sg", None, "GroupId"),
                ("subnet", ec2.delete_subnet, "SubnetId"),
                ("vpc", ec2.delete_vpc, "VpcId")):
            for tok in self.ledger.present(kind):
                rid = ids.get((kind, tok))
                if rid is None:
                    continue
                if kind == "sg":
                    self._delete_group(counts, ec2, tok, rid)
                else:
                    self._call(counts, delete, (kind, tok, ABSENT), **{param: rid})


def _tags(resource_type: str, token: str) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": token}]}]


def _perm(port: int) -> dict:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
            "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}


def token_of(resource: dict) -> str | None:
    for tag in resource.get("Tags") or resource.get("TagSet") or []:
        if tag["Key"] == "Name":
            return tag["Value"]
    return None


def ids_by_token(ec2: Any) -> dict[tuple[str, str], str]:
    """(kind, token) → the server's id, for every object the workload tagged."""
    out: dict[tuple[str, str], str] = {}
    for v in ec2.describe_vpcs()["Vpcs"]:
        if (t := token_of(v)) is not None:
            out[("vpc", t)] = v["VpcId"]
    for s in ec2.describe_subnets()["Subnets"]:
        if (t := token_of(s)) is not None:
            out[("subnet", t)] = s["SubnetId"]
    for g in ec2.describe_security_groups()["SecurityGroups"]:
        if (t := token_of(g)) is not None:
            out[("sg", t)] = g["GroupId"]
    for e in ec2.describe_network_interfaces()["NetworkInterfaces"]:
        if (t := token_of(e)) is not None:
            out[("eni", t)] = e["NetworkInterfaceId"]
    return out
