"""Crash recovery (issue 5, item 1): one live server is SIGKILLed at random moments — while
functions are created, updated, deleted and invoked (sync and Event), VPC objects change and
sandboxes start, and sometimes while it is still starting — and restarted. After every restart:
every acknowledged change is there, every accepted Event invocation has run (its request id is
in the function's log), the store is consistent, the reconcilers converge (a second pass changes
nothing) and the kernel holds nothing the new server does not account for. After the final stop
nothing of ours remains.

Reduced by default (LP_FAULT_TRIALS, default 12); `LP_FAULTS_FULL=1` runs 50 trials. A summary
goes to bench-out/faults.json (and .md) for the README table."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from tests.faults import invariants
from tests.faults.conftest import SUMMARY
from tests.faults.ledger import Ledger
from tests.faults.workload import (EVENT_FUNCTIONS, ROLE, RUNTIME, Counts, Workload, client,
                                   code_sha256, function_code)
from tests.harness import REGION, LiveServer

pytestmark = pytest.mark.root

FULL = os.environ.get("LP_FAULTS_FULL") == "1"
TRIALS = int(os.environ.get("LP_FAULT_TRIALS", "50" if FULL else "12"))
SEED = int(os.environ.get("LP_FAULT_SEED", str(random.randrange(1 << 30))))
# share of trials that kill the server while it is starting up
KILL_DURING_START = float(os.environ.get("LP_FAULT_KILL_DURING_START", "0.2"))
EVENT_DEADLINE_S = 60.0
OUT_DIR = Path(os.environ.get("LP_BENCH_OUT", "bench-out"))


@dataclass
class TrialRecord:
    trial: int
    killed_after_s: float
    killed_during_start: bool
    requests: int
    acked: int
    unanswered: int
    events_accepted: int
    cold_invokes: int
    reconcile_first_pass: int
    violations: list[str] = field(default_factory=list)


class CrashableServer(LiveServer):
    def start_and_kill_early(self, after_s: float) -> None:
        """Start `serve` and SIGKILL it `after_s` later, whether or not it is up yet."""
        cmd = [sys.executable, "-m", "lambdaplane.cli", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--instance", self.instance, "--no-uplink",
               *self.extra_args]
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(after_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def _setup(server: LiveServer, ledger: Ledger) -> dict[str, list[str]]:
    """The long-lived Event functions, one of them in a VPC made here (untagged: the ledger
    tracks only the workload's own EC2 objects). Returns that VpcConfig."""
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="fn", Description="functions",
                                      VpcId=vpc)["GroupId"]
    churn_group = ec2.create_security_group(GroupName="churn", Description="churned functions",
                                            VpcId=vpc)["GroupId"]
    vpc_config = {"SubnetIds": [subnet], "SecurityGroupIds": [group]}
    lam = server.lambda_()
    for name in EVENT_FUNCTIONS:
        zip_bytes = function_code(name)
        extra = {"VpcConfig": vpc_config} if "vpc" in name else {}
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": zip_bytes}, Timeout=30, **extra)
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        ledger.acked_change("function", name, ("", code_sha256(zip_bytes)))
        ledger.acked_change("env", name, "")
    # The churned VPC functions use a group of their own, so their Hyperplane ENI is made and
    # deleted with them (ev-vpc keeps the other one alive).
    return {"SubnetIds": [subnet], "SecurityGroupIds": [churn_group]}


def _events_ran(server: LiveServer, accepted: dict[str, str]) -> list[str]:
    """Every accepted Event ran: its row says succeeded and its request id is in the log."""
    deadline = time.monotonic() + EVENT_DEADLINE_S
    while True:
        rows = invariants.event_rows(server.data_dir)
        missing = [rid for rid in accepted if rid not in rows]
        waiting = [rid for rid, (status, _a, _e) in rows.items()
                   if rid in accepted and status == "queued"]
        if missing or not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = [f"accepted event {rid} is not in the store" for rid in missing]
    problems += [f"event {rid} is {rows[rid][0]} after {rows[rid][1]} attempts ({rows[rid][2]})"
                 for rid in accepted if rid in rows and rows[rid][0] != "succeeded"]
    logged: set[str] = set()
    for name in set(accepted.values()):
        # the file: written before the invocation is settled, unlike the queue-fed Logs store
        lines = server.admin(f"logs/{REGION}/{name}?tail=100000000&source=file"  # type: ignore[index]
                             )["lines"]
        logged.update(line.split()[1] for line in lines if line.startswith("RAN "))
    problems += [f"event {rid} for {name} succeeded but its run is not in the log"
                 for rid, name in accepted.items() if rid not in logged]
    return problems


def _check_after_restart(server: CrashableServer, ledger: Ledger,
                         accepted: dict[str, str]) -> tuple[list[str], int]:
    lam, ec2 = client(server.endpoint, "lambda"), client(server.endpoint, "ec2")
    problems = invariants.database_problems(server.data_dir)
    functions = invariants.observed_functions(lam)
    problems += invariants.function_problems(lam, server.endpoint, functions)
    functions = invariants.observed_functions(lam)  # settled now
    verdicts = [ledger.verify("function", {n: (f.get("Description", ""), f["CodeSha256"])
                                           for n, f in functions.items()})]
    verdicts.append(ledger.verify("env", {
        n: (f.get("Environment") or {}).get("Variables", {}).get("GEN", "")
        for n, f in functions.items() if n in EVENT_FUNCTIONS}))
    observed, ec2_problems = invariants.ec2_observed(ec2)
    problems += ec2_problems
    lambda_enis = invariants.hyperplane_enis(ec2)
    problems += invariants.hyperplane_problems(functions, lambda_enis)
    for kind in ("vpc", "subnet", "sg", "rules", "eni"):
        verdicts.append(ledger.verify(kind, observed[kind]))
    problems += [v for verdict in verdicts for v in verdict.violations]
    problems += _events_ran(server, accepted)
    first = invariants.reconcile(server.endpoint)
    second = invariants.reconcile(server.endpoint)
    if any(second.values()):
        problems.append(f"reconcile does not converge: second pass changed {second} "
                        f"(first: {first})")
    vpc_ids = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    problems += invariants.settled_kernel_problems(server.instance, server.pid,
                                                   server.endpoint, vpc_ids, len(lambda_enis))
    return problems, sum(len(c) for c in first.values())


def _write_summary(records: list[TrialRecord], totals: Counts, leftovers: list[str],
                   events: int, ledger: Ledger) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    summary = {
        "seed": SEED, "trials": len(records),
        "killed_during_start": sum(r.killed_during_start for r in records),
        "requests": totals.requests, "acknowledged_changes": totals.acked,
        "unanswered_changes": totals.unanswered, "refused": totals.refused,
        "sync_invokes": totals.sync_invokes, "cold_start_invokes": totals.cold_invokes,
        "events_accepted": events,
        "functions_created": {p: sum(k.startswith(p + "-") for k in ledger.keys("function"))
                              for p in ("churn", "vpcfn")},
        "vpcs_created": len(ledger.keys("vpc")),
        "trials_with_violations": sum(bool(r.violations) for r in records),
        "violations": [v for r in records for v in r.violations][:50],
        "leftovers_after_final_stop": leftovers,
        "records": [asdict(r) for r in records]}
    (OUT_DIR / "faults.json").write_text(json.dumps(summary, indent=2) + "\n")
    SUMMARY.append(
        f"{len(records)} trials (seed {SEED}, {summary['killed_during_start']} killed while "
        f"starting), {totals.requests} requests, {totals.acked} acknowledged changes, "
        f"{totals.unanswered} unanswered, {events} Event invocations accepted, functions "
        f"created {summary['functions_created']}, {summary['vpcs_created']} VPCs, "
        f"{totals.cold_invokes} cold-start invokes, {summary['trials_with_violations']} trials "
        f"with violations, {len(leftovers)} leftovers after the final stop "
        f"(details: {OUT_DIR / 'faults.json'})")


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = CrashableServer(tmp_path / "data")
    ledger = Ledger()
    accepted: dict[str, str] = {}
    records: list[TrialRecord] = []
    totals = Counts()
    leftovers: list[str] = ["not stopped"]
    try:
        server.start()
        vpc_config = _setup(server, ledger)
        for trial in range(TRIALS):
            during_start = rng.random() < KILL_DURING_START
            workload = Workload(server.endpoint, ledger, trial, rng, accepted, vpc_config)
            workload.start()
            after = rng.uniform(0.2, 3.0)
            time.sleep(after)
            server.kill()
            counts = workload.stop()
            totals.merge(counts)
            if during_start:
                server.start_and_kill_early(rng.uniform(0.0, 0.6))
            server.start()
            problems, first_pass = _check_after_restart(server, ledger, accepted)
            problems += [f"workload: {e}" for e in counts.errors]
            records.append(TrialRecord(trial, round(after, 3), during_start, counts.requests,
                                       counts.acked, counts.unanswered, counts.event_invokes,
                                       counts.cold_invokes, first_pass, problems))
        server.stop()
        leftovers = server.leftovers()
    finally:
        server.stop()
        server.backstop_clean()
        _write_summary(records, totals, leftovers, len(accepted), ledger)
        if any(r.violations for r in records) and server.log_path.exists():
            # the server's own account of the failed trials, kept past pytest's tmp rotation
            (OUT_DIR / "faults-server.log").write_bytes(server.log_path.read_bytes()[-4_000_000:])
    bad = [r for r in records if r.violations]
    assert not bad, "\n".join(f"trial {r.trial}: {v}" for r in bad for v in r.violations[:20])
    assert not leftovers, f"server left behind: {leftovers}"
    assert totals.acked > 0 and accepted, "the workload made no acknowledged change"
