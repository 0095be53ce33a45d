"""The one report of `lambdaplane bench all`: every benchmark's headline figures, each beside
its goal and the published figure it is compared with, as `summary.md` (the table the README
shows) and `summary.json`, next to the benchmarks' own JSON and PNG files. Pure formatting:
it reads result dicts, measures nothing."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Line:
    benchmark: str
    figure: str
    measured: str
    goal: str
    met: bool | None  # None: no goal, or not measured
    anchor: str
    plot: str = ""


def _ms(value: Any) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def _get(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _le(value: Any, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _ge(value: Any, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _fork_exec(r: dict) -> str:
    """' (fork+exec of python: N ms, ratio R)' when the run measured its ceiling."""
    fork = _get(r, "ceiling", "fork_exec_python", "p50_ms")
    return "" if fork is None else f" (fork+exec of python, same run: {fork:,.1f} ms)"


def _invoke(r: dict) -> list[Line]:
    cold, warm = _get(r, "cold_start", "p50_ms"), _get(r, "warm_invoke", "p50_ms")
    ratio = _get(r, "ratio_to_fork_exec", "cold_p50")
    others = []
    for rt, per in (r.get("per_runtime") or {}).items():
        if rt == r.get("runtime"):
            continue
        rt_cold, rt_warm = _get(per, "cold_start", "p50_ms"), _get(per, "warm_invoke", "p50_ms")
        hit = _get(per, "prestarted", "hit_ratio")  # of its cold starts, those finding node ready
        others.append(Line("invoke", f"{rt} cold start p50 / warm p50 (same run as "
                           f"{r.get('runtime')}: {_ms(cold)} / {_ms(warm)})",
                           f"{_ms(rt_cold)} / {_ms(rt_warm)}" +
                           (f" (node ready: {hit:.0%} of cold starts)" if hit is not None
                            else ""), "≤ 25 ms cold",
                           _le(rt_cold, 25.0), "AWS ~150–250 ms for Node", "invoke.png"))
    return [
        Line("invoke", "cold start p50 (HTTP API, hello world)", _ms(cold) + _fork_exec(r),
             "≤ 15 ms", _le(cold, 15.0), "AWS ~200–300 ms; LocalStack 700–870 ms",
             "invoke.png"),
        *([Line("invoke", "cold start p50 ÷ fork+exec of python (same run)",
                f"{ratio:.2f}", "—", None, "the ceiling of a cold start that starts an "
                "interpreter", "invoke.png")] if ratio is not None else []),
        Line("invoke", "cold start p99", _ms(_get(r, "cold_start", "p99_ms")), "sane (≪ AWS)",
             None, "AWS ~200–300 ms p50", "invoke.png"),
        Line("invoke", "warm invoke p50", _ms(warm), "≤ 2 ms", _le(warm, 2.0),
             "AWS ~25 ms (2018); LocalStack 10–17 ms", "invoke.png"),
        *others,
    ]


def _throughput(r: dict) -> list[Line]:
    best = _get(r, "best", "invokes_per_s")
    at = _get(r, "best", "concurrency")
    return [Line("throughput", f"warm invokes/s through the HTTP API (best, at {at} callers; "
                 "client on the same 2 cores)", "—" if best is None else f"{best:,.0f}/s",
                 "≥ 3,000/s", _ge(best, 3000.0), "LocalStack 10–17 ms per warm invoke",
                 "throughput.png")]


def _throughput_ceiling(r: dict) -> list[Line]:
    """The same-run ceiling: an aiohttp hello-world measured by the same client."""
    ratio = _get(r, "ratio_to_hello_world", "ratio")
    if ratio is None:
        return []
    at = _get(r, "ratio_to_hello_world", "concurrency")
    ours = _get(r, "ratio_to_hello_world", "invokes_per_s")
    hello = _get(r, "ceiling", "hello_world_aiohttp", "invokes_per_s")
    p50 = _get(r, "ratio_to_hello_world", "warm_p50_ms")
    return [Line("throughput", f"warm invokes/s ÷ aiohttp hello-world, same client, same run "
                 f"(at {at} callers)", f"{ratio:.3f} ({ours:,.0f}/s vs {hello:,.0f}/s)",
                 "≥ 0.25", _ge(ratio, 0.25), "hello-world: the ceiling of a Python server here",
                 "throughput.png"),
            Line("throughput", f"warm invoke p50 at {at} callers", _ms(p50), "≤ 0.5 ms",
                 _le(p50, 0.5), "", "throughput.png")]


def _default_server(r: dict) -> list[Line]:
    """Before (--capacity fixed) → after (adaptive), on an otherwise default server."""
    fixed, adaptive = _get(r, "modes", "fixed"), _get(r, "modes", "adaptive")
    if not fixed or not adaptive:
        return []
    fork = _get(r, "ceiling", "fork_exec_python", "p50_ms")
    out: list[Line] = []
    for i, (b, a) in enumerate(zip(fixed["bursts"], adaptive["bursts"])):
        goal = 1000.0 if i == 0 else 300.0
        out.append(Line("default_server", f"burst {i + 1} of {a['n']} VPC cold starts, p50 / "
                        "p99 (fixed → adaptive)", f"{_ms(b['p50_ms'])} / {_ms(b['p99_ms'])} → "
                        f"{_ms(a['p50_ms'])} / {_ms(a['p99_ms'])}", f"p99 ≤ {goal:,.0f} ms",
                        _le(a["p99_ms"], goal), "issue 19: 928/2,077 → 1,762/3,028 ms"))
    cold_b, cold_a = fixed["distinct_cold"]["p50_ms"], adaptive["distinct_cold"]["p50_ms"]
    memory = _default_server_memory(r)
    out.append(Line("default_server", "distinct new functions back to back, cold p50 "
                    "(fixed → adaptive)", f"{_ms(cold_b)} → {_ms(cold_a)} (fork+exec of "
                    f"python: {_ms(fork)})", "≤ 15 ms", _le(cold_a, 15.0),
                    "issue 19: 20–46 ms"))
    return out + memory


def _default_server_memory(r: dict) -> list[Line]:
    """Memory at start, after a burst and after idle (bench/idle_memory.py)."""
    m = r.get("idle_memory")
    if not m:
        return []
    parts = []
    for key, label in (("at_start", "start"), ("after_burst", "after a burst"),
                       ("after_idle", "idle")):
        snap = m.get(key, {})
        parts.append(f"{label} {snap.get('instance_cgroup_mb')} + {snap.get('server_rss_mb')} MB")
    idle = m.get("after_idle", {})
    start = m.get("at_start", {})
    back = (idle.get("reached") and idle.get("instance_cgroup_mb") is not None
            and start.get("instance_cgroup_mb") is not None
            and idle["instance_cgroup_mb"] <= 2 * start["instance_cgroup_mb"] + 16)
    return [Line("default_server", "memory: sandboxes' cgroup + server RSS, at start / after a "
                 f"burst of {m.get('cold_starts_in_burst')} / after "
                 f"{idle.get('idle_s')} s idle ({' '.join(m.get('server_args', []))})",
                 "; ".join(parts), "back near the start after idle", bool(back),
                 "issue 19: back near the default after 10 minutes")]


def _burst(r: dict) -> list[Line]:
    n = _get(r, "plan", "burst")
    vpc99, novpc99 = _get(r, "vpc", "p99_ms"), _get(r, "no_vpc", "p99_ms")
    return [
        Line("burst", f"{n} simultaneous VPC cold starts, p99", _ms(vpc99) + _fork_exec(r),
             "≤ 250 ms",
             _le(vpc99, 250.0), "netns+veth per sandbox: 14.4 s for 100 (HotCloud'19)",
             "burst.png"),
        Line("burst", f"{n} simultaneous VPC cold starts, p50", _ms(_get(r, "vpc", "p50_ms")),
             "—", None, "AWS VPC cold start 250–500 ms after 2019", "burst.png"),
        Line("burst", f"{n} simultaneous non-VPC cold starts, p99", _ms(novpc99), "—", None,
             "same as VPC (Hyperplane: one map element)", "burst.png"),
        Line("burst", f"the server's first burst of {n} VPC cold starts, p99 (pre-forked "
             "sandboxes that had nothing learnt to copy yet)",
             _ms(_get(r, "first_burst_after_start", "vpc", "p99_ms")), "—", None, "—",
             "burst.png"),
    ]


def _scale(r: dict) -> list[Line]:
    reached = r.get("reached", {})
    envs = reached.get("environments")
    return [
        Line("scale", "concurrent execution environments on one host",
             "—" if envs is None else f"{envs:,}", "1,000", _ge(envs, 1000),
             "AWS default account concurrency 1,000", "scale.png"),
        Line("scale", "memory per environment (PSS; host MemAvailable)",
             f"{reached.get('pss_mib_per_env')} MiB; {reached.get('host_mib_per_env')} MiB",
             "fits 1,000 in 24 GB", _le(reached.get("host_mib_per_env"), 24.0),
             "Firecracker: ≤5 MiB VMM + guest memory per microVM; Docker per env elsewhere",
             "scale.png"),
        Line("scale", "cold start p50 / p99 at the top step",
             f"{_ms(reached.get('cold_p50_ms_at_top'))} / "
             f"{_ms(reached.get('cold_p99_ms_at_top'))}", "—", None,
             "1,600 netns in 120 s (Particle, SoCC'20)", "scale.png"),
        Line("scale", "API (ListFunctions) p99 while scaling", _ms(reached.get("api_p99_ms_at_top")),
             "responsive (≤ 250 ms)", _le(reached.get("api_p99_ms_at_top"), 250.0), "—",
             "scale.png"),
    ]


def _vpc(r: dict) -> list[Line]:
    """The goal holds at every concurrency, so each line shows the worst of them: side by
    side (the verdict) and apart (bench/vpc.py's docstring)."""
    rows = _get(r, "modes", "hyperplane", "rows") or []
    lines = []
    for how, ratio_of in (("side by side", lambda row: (row.get("side_by_side") or {})
                           .get("p50_ratio")),
                          ("apart", lambda row: row.get("p50_ratio"))):
        ratios = [(ratio_of(row), row["concurrency"]) for row in rows
                  if ratio_of(row) is not None]
        if not ratios:
            continue
        ratio, at = max(ratios)
        span = f"{rows[0]['concurrency']}–{rows[-1]['concurrency']}"
        lines.append(Line("vpc", f"VPC / non-VPC cold start p50, {how}, worst of {span} "
                          f"concurrent (Hyperplane; here at {at})", f"{ratio:.2f}×", "≤ 1.05×",
                          _le(ratio, 1.05), "AWS ~1.4× after 2019, ~25× before",
                          "vpc-cold-start-cdf.png"))
    return lines


def _datapath(r: dict) -> list[Line]:
    out = []
    for key, label in (("throughput_ratio", "TCP throughput via ENI / direct veth"),
                       ("conn_rate_ratio", "new connections/s via ENI / direct veth")):
        value = _get(r, "ratios", key)
        out.append(Line("datapath", label, "—" if value is None else f"{value:.3f}",
                        "≥ 0.9", _ge(value, 0.9),
                        "here, by hand: 1.7–1.95 vs 2.0 GB/s; 5.3k vs 5.9k conn/s",
                        "datapath.png"))
    return out


def _nat(r: dict) -> list[Line]:
    out = []
    for key, label in (("throughput_ratio", "TCP throughput via NAT gateway / direct (EIP)"),
                       ("conn_rate_ratio", "new connections/s via NAT gateway / direct (EIP)")):
        value = _get(r, "ratios", key)
        out.append(Line("nat", label, "—" if value is None else f"{value:.3f}", "≥ 0.9",
                        _ge(value, 0.9), "AWS: up to 100 Gbit/s per NAT gateway", ""))
    return out


def _neighbours(r: dict) -> list[Line]:
    value = _get(r, "noisy_over_quiet_p99")
    return [Line("neighbours", "a function's warm p99 beside a spinning neighbour / quiet",
                 "—" if value is None else f"{value:.2f}x", "≤ 2x",
                 _le(value, 2.0), "AWS: one microVM per environment", "neighbours.png")]


def _fabric(r: dict) -> list[Line]:
    """bench/fabric.py: the function on the other host than its resource (no goal set)."""
    out = []
    for path, label in ((("cold_start", "p50_ratio"),
                         "VPC cold start p50, function on the other host / same host"),
                        (("datapath", "ratios", "throughput_ratio"),
                         "TCP throughput across the EVPN fabric (ENI) / direct veth"),
                        (("datapath", "ratios", "conn_rate_ratio"),
                         "new connections/s across the EVPN fabric (ENI) / direct veth")):
        value = _get(r, *path)
        out.append(Line("fabric", label, "—" if value is None else f"{value:.3f}", "—", None,
                        "two namespace-hosts, one VXLAN hop", "fabric.png"))
    return out


SECTIONS: dict[str, Callable[[dict], list[Line]]] = {
    "invoke": _invoke, "throughput": lambda r: _throughput(r) + _throughput_ceiling(r),
    "default_server": _default_server, "burst": _burst, "scale": _scale,
    "neighbours": _neighbours,
    "vpc": _vpc, "datapath": _datapath, "nat": _nat, "fabric": _fabric}


def lines(results: dict[str, dict]) -> list[Line]:
    out: list[Line] = []
    for name, section in SECTIONS.items():
        if name in results:
            found = section(results[name])
            args = results[name].get("server_args")
            if found and args and name != "default_server":  # not the default server: say so
                found[0] = replace(found[0], figure=f"{found[0].figure} (server "
                                   f"`{' '.join(args)}`)")
            out += found
    return out


def markdown(results: dict[str, dict], machine: dict[str, Any] | None = None) -> str:
    rows = lines(results)
    head = ["# lambdaplane benchmark summary", ""]
    times = sorted({str(r["machine"]["time"]) for r in results.values() if "machine" in r})
    if machine:
        when = (f"one run of `lambdaplane bench all`, {times[0]}" if len(times) <= 1 else
                f"the latest run of each benchmark, {times[0]} to {times[-1]} (each JSON "
                f"file has its own time)")
        head += [(f"{machine.get('cores')} cores, kernel {machine.get('kernel')}, Python "
                  f"{machine.get('python')}: {when}. Clients run on the same cores as the "
                  "server."), ""]
    table = ["| benchmark | figure | measured | goal | met | compared with |",
             "|---|---|---|---|---|---|"]
    for line in rows:
        met = {True: "yes", False: "**no**", None: "—"}[line.met]
        figure = f"[{line.figure}]({line.plot})" if line.plot else line.figure
        table.append(f"| {line.benchmark} | {figure} | {line.measured} | {line.goal} | {met} | "
                     f"{line.anchor} |")
    tail = ["", ("Rerun: `lambdaplane bench all`, or one benchmark: `lambdaplane bench "
                 f"{{{','.join(name.replace('_', '-') for name in results)}}}`; JSON and PNG "
                 "files sit beside this summary.")]
    return "\n".join(head + table + tail) + "\n"


def write(out_dir: Path, results: dict[str, dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = next((r["machine"] for r in results.values() if "machine" in r), None)
    path = out_dir / "summary.md"
    path.write_text(markdown(results, machine))
    (out_dir / "summary.json").write_text(json.dumps(
        {"machine": machine, "lines": [asdict(line) for line in lines(results)]}, indent=2)
        + "\n")
    return path
