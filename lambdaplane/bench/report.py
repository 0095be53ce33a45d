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
    return "—" if value is None else f"{_num(value)} ms"


def _num(value: Any) -> str:
    """Two decimals below 10 (sub-millisecond figures have goals), one above."""
    return "—" if value is None else f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def get(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _le(value: Any, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _ge(value: Any, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _fork_exec(r: dict, value: Any = None) -> str:
    """' (R of fork+exec of `python3 -c pass` in the same run, N ms)' when the run measured its
    ceiling; R only when `value` is given."""
    fork = get(r, "ceiling", "fork_exec_python", "p50_ms")
    if fork is None:
        return ""
    ratio = f"{value / fork:.2f}× " if value is not None and fork else ""
    return f" ({ratio}fork+exec of `python3 -c pass` in the same run, {fork:,.1f} ms)"


def _runtime_line(r: dict, rt: str, per: dict) -> Line:
    """Another runtime measured side by side (Node.js): cold p50 / p99 / warm p50, and how many
    of its cold starts found a pre-started runtime ready (sandbox/prestart.py)."""
    cold, p99 = get(per, "cold_start", "p50_ms"), get(per, "cold_start", "p99_ms")
    warm = get(per, "warm_invoke", "p50_ms")
    measured = f"{_num(cold)} / {_num(p99)} / {_num(warm)} ms" + _fork_exec(r, cold)
    pre = per.get("prestarted") or {}
    if pre.get("hit_ratio") is not None:
        taken = sum(pre.get(k, 0) for k in ("taken_ready", "taken_starting", "taken_none"))
        measured += (f"; of {taken} cold starts {pre.get('taken_ready')} found a pre-started "
                     f"runtime ready, {pre.get('taken_starting')} one still booting, "
                     f"{pre.get('taken_none')} none (hit ratio {pre['hit_ratio']:.2f}; a boot "
                     f"took {pre.get('boot_ms', 0):,.0f} ms)")
    return Line("invoke", f"{rt} cold start p50 / p99 / warm p50 (`bench invoke --runtimes "
                f"{r.get('runtime')},{rt}`, samples taken in turn)", measured, "≤ 25 ms cold",
                _le(cold, 25.0), "AWS ~150–250 ms for Node", "invoke.png")


def _invoke(r: dict) -> list[Line]:
    cold, warm = get(r, "cold_start", "p50_ms"), get(r, "warm_invoke", "p50_ms")
    others = [_runtime_line(r, rt, per) for rt, per in (r.get("per_runtime") or {}).items()
              if rt != r.get("runtime")]
    return [
        Line("invoke", f"cold start p50 (HTTP API, hello world, {r.get('runtime')})",
             _ms(cold) + _fork_exec(r, cold), "≤ 15 ms", _le(cold, 15.0),
             "AWS ~200–300 ms; LocalStack 700–870 ms", "invoke.png"),
        Line("invoke", "cold start p99", _ms(get(r, "cold_start", "p99_ms")), "sane (≪ AWS)",
             None, "AWS ~200–300 ms p50", "invoke.png"),
        Line("invoke", "warm invoke p50, one caller", f"{_ms(warm)} (p99 "
             f"{_ms(get(r, 'warm_invoke', 'p99_ms'))})", "≤ 0.5 ms (issue 19)",
             _le(warm, 0.5), "AWS ~25 ms (2018); LocalStack 10–17 ms", "invoke.png"),
        *others,
    ]


def _throughput(r: dict) -> list[Line]:
    best = get(r, "best", "invokes_per_s")
    at = get(r, "best", "concurrency")
    return [Line("throughput", "warm invokes/s through the HTTP API (best of 1–64 callers; "
                 "client on the same 2 cores)",
                 "—" if best is None else f"{best:,.0f}/s at {at}",
                 "≥ 3,000/s", _ge(best, 3000.0), "LocalStack 10–17 ms per warm invoke",
                 "throughput.png")]


def _throughput_ceiling(r: dict) -> list[Line]:
    """The same-run ceiling: an aiohttp hello world measured by the same client, and the server
    CPU per request of each (bench/process_cpu.py)."""
    ratio = get(r, "ratio_to_hello_world", "ratio")
    if ratio is None:
        return []
    at = get(r, "ratio_to_hello_world", "concurrency")
    ours = get(r, "ratio_to_hello_world", "invokes_per_s")
    hello = get(r, "ceiling", "hello_world_aiohttp", "invokes_per_s")
    cpu_hello = get(r, "ceiling", "hello_world_aiohttp", "cpu_per_request", "server_us")
    level = next((x for x in r.get("levels", []) if x.get("concurrency") == at), {})
    cpu_ours = get(level, "cpu_per_invoke", "server_us")
    cpu = (f"; server CPU {cpu_ours:,.0f} µs / {cpu_hello:,.0f} µs = {cpu_ours / cpu_hello:.1f}×"
           if cpu_ours and cpu_hello else "")
    return [Line("throughput", f"warm invokes/s at {at} callers / an aiohttp hello world's, same "
                 "client, same run; server CPU per warm invoke / per hello-world request "
                 "(from /proc)", f"{ours:,.0f} / {hello:,.0f} = {ratio:.2f}{cpu}", "≥ 0.25",
                 _ge(ratio, 0.25), "hello world: the ceiling of a Python server here",
                 "throughput.png")]


def _default_server(r: dict) -> list[Line]:
    """Before (--capacity fixed) → after (adaptive), on an otherwise default server."""
    fixed, adaptive = get(r, "modes", "fixed"), get(r, "modes", "adaptive")
    if not fixed or not adaptive:
        return []
    out: list[Line] = []
    for i, (b, a) in enumerate(zip(fixed["bursts"], adaptive["bursts"])):
        goal = 1000.0 if i == 0 else 300.0
        out.append(Line("default_server", f"burst {i + 1} of {a['n']} simultaneous VPC cold "
                        "starts on `lambdaplane serve` with no flag, p50 / p99 (`--capacity "
                        "fixed` → adaptive, the default)", f"{_num(b['p50_ms'])} / "
                        f"{_num(b['p99_ms'])} → {_num(a['p50_ms'])} / **{_num(a['p99_ms'])}** ms",
                        f"p99 ≤ {goal:,.0f} ms", _le(a["p99_ms"], goal),
                        "issue 19's first measurement: 928 / 2,077, 1,627 / 2,798, "
                        "1,762 / 3,028 ms"))
    cold_b, cold_a = fixed["distinct_cold"]["p50_ms"], adaptive["distinct_cold"]["p50_ms"]
    out.append(Line("default_server", f"{adaptive['distinct_cold']['n']} distinct new functions "
                    "invoked back to back, cold start p50 (fixed → adaptive)",
                    f"{_num(cold_b)} → **{_num(cold_a)}** ms" + _fork_exec(r, cold_a),
                    "≤ 15 ms", _le(cold_a, 15.0), "issue 19: 20–46 ms"))
    return out + _default_server_memory(r)


def _default_server_memory(r: dict) -> list[Line]:
    """Memory at start, after a burst and after idle (bench/idle_memory.py)."""
    m = r.get("idle_memory")
    if not m:
        return []
    snaps = [m.get(key, {}) for key in ("at_start", "after_burst", "after_idle")]
    idle, start = snaps[2], snaps[0]
    back = (idle.get("reached") and idle.get("instance_cgroup_mb") is not None
            and start.get("instance_cgroup_mb") is not None
            and idle["instance_cgroup_mb"] <= 2 * start["instance_cgroup_mb"] + 16)
    return [Line("default_server", "memory: sandboxes' cgroup + server RSS at start / after a "
                 f"burst of {m.get('cold_starts_in_burst')} / after {idle.get('idle_s')} s idle "
                 f"(`{' '.join(m.get('server_args', []))}` to shorten the wait)",
                 " / ".join(f"{s.get('instance_cgroup_mb')} + {s.get('server_rss_mb')} MB"
                            for s in snaps), "back near the start", bool(back),
                 "issue 19: back near the default after 10 minutes")]


def _burst(r: dict) -> list[Line]:
    n = get(r, "plan", "burst")
    vpc99, novpc99 = get(r, "vpc", "p99_ms"), get(r, "no_vpc", "p99_ms")
    rounds = get(r, "plan", "rounds")
    return [
        Line("burst", f"{n} simultaneous VPC cold starts, p99 ({rounds} bursts)",
             _ms(vpc99) + _fork_exec(r, vpc99), "≤ 250 ms",
             _le(vpc99, 250.0), "netns+veth per sandbox: 14.4 s for 100 (HotCloud'19)",
             "burst.png"),
        Line("burst", f"{n} simultaneous VPC cold starts, p50", _ms(get(r, "vpc", "p50_ms")),
             "—", None, "AWS VPC cold start 250–500 ms after 2019", "burst.png"),
        Line("burst", f"{n} simultaneous non-VPC cold starts, p50 / p99",
             f"{_num(get(r, 'no_vpc', 'p50_ms'))} / {_num(novpc99)} ms", "—", None,
             "same as VPC (Hyperplane: one map element)", "burst.png"),
        Line("burst", f"the server's first burst of {n} VPC cold starts, p99 (pre-forked "
             "sandboxes that had nothing learnt to copy yet)",
             _ms(get(r, "first_burst_after_start", "vpc", "p99_ms")), "—", None, "—",
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
        Line("scale", "API (ListFunctions) p99 while scaling",
             _ms(reached.get("api_p99_ms_at_top")),
             "responsive (≤ 250 ms)", _le(reached.get("api_p99_ms_at_top"), 250.0), "—",
             "scale.png"),
    ]


def _vpc(r: dict) -> list[Line]:
    """The goal holds at every concurrency, so each line shows the worst of them, then every
    level: side by side (the verdict) and apart (bench/vpc.py's docstring)."""
    rows = get(r, "modes", "hyperplane", "rows") or []
    lines = []
    for how, ratio_of in (("side by side", lambda row: (row.get("side_by_side") or {})
                           .get("p50_ratio")),
                          ("apart", lambda row: row.get("p50_ratio"))):
        ratios = [(ratio_of(row), row["concurrency"]) for row in rows
                  if ratio_of(row) is not None]
        if not ratios:
            continue
        ratio, _ = max(ratios)
        each = ", ".join(f"{value:.2f}" for value, _ in ratios)
        levels = ", ".join(str(at) for _, at in ratios)
        verdict = how == "side by side"  # apart: bursts a moment apart meet another machine
        lines.append(Line("vpc", f"VPC / non-VPC cold start p50, {how}, worst of "
                          f"{rows[0]['concurrency']}–{rows[-1]['concurrency']} concurrent "
                          "(Hyperplane)", f"{ratio:.2f}× ({each} at {levels})",
                          "≤ 1.05×" if verdict else "— (side by side is the verdict)",
                          _le(ratio, 1.05) if verdict else None,
                          "AWS ~1.4× after 2019, ~25× before", "vpc-cold-start-cdf.png"))
    return lines


def vpc_table(r: dict) -> str:
    """bench vpc's rows, both modes, as the README's table (markdown)."""
    out = ["| mode | concurrent | VPC p50 / p99 ms (apart) | no-VPC p50 / p99 ms (apart) | "
           "p50 ratio apart | p50 ratio side by side | subnet addresses in use |",
           "|---|---|---|---|---|---|---|"]
    for mode in ("hyperplane", "legacy"):
        for row in get(r, "modes", mode, "rows") or []:
            side = row.get("side_by_side")
            rounds = (side or {}).get("round_p50_ratios") or []
            side_text = "—" if not side else (
                f"{side['p50_ratio']:.2f}" + (f" (rounds {min(rounds):.2f}–{max(rounds):.2f})"
                                              if rounds else ""))
            out.append(f"| {mode} | {row['concurrency']} | {_num(row['vpc']['p50_ms'])} / "
                       f"{_num(row['vpc']['p99_ms'])} | {_num(row['no_vpc']['p50_ms'])} / "
                       f"{_num(row['no_vpc']['p99_ms'])} | {row['p50_ratio']:.2f} | {side_text} "
                       f"| {row.get('addresses_in_use')} |")
    return "\n".join(out) + "\n"


def _ratio_lines(r: dict, section: str, labels: tuple[str, str], paths: tuple[str, str],
                 anchor: str, plot: str) -> list[Line]:
    """Throughput and new connections/s of `paths[0]` over `paths[1]` (bench datapath, nat),
    with the absolute figures of the same run."""
    out = []
    for key, label, unit in (("throughput_ratio", labels[0], "throughput_gbit_s"),
                             ("conn_rate_ratio", labels[1], "connections")):
        value = get(r, "ratios", key)
        figures = [get(r, "paths", path, unit) for path in paths]
        if unit == "connections":
            figures = [get(f, "per_s") if isinstance(f, dict) else None for f in figures]
            shown = "" if None in figures else f" ({figures[0]:,} / {figures[1]:,} per s)"
        else:
            shown = "" if None in figures else f" ({figures[0]} / {figures[1]} Gbit/s)"
        paired = get(r, "ratios_paired_median", key)
        out.append(Line(section, label, "—" if value is None else f"{value:.3f}{shown}" +
                        (f"; paired median {paired:.3f}" if paired is not None else ""),
                        "≥ 0.9", _ge(value, 0.9), anchor, plot))
    return out


def _datapath(r: dict) -> list[Line]:
    return _ratio_lines(r, "datapath", ("TCP throughput via ENI / direct veth",
                                        "new connections/s via ENI / direct veth"),
                        ("eni", "direct_veth"),
                        "here, by hand: 1.7–1.95 vs 2.0 GB/s; 5.3k vs 5.9k conn/s",
                        "datapath.png")


def _nat(r: dict) -> list[Line]:
    return _ratio_lines(r, "nat", ("TCP throughput via NAT gateway / direct (Elastic IP)",
                                   "new connections/s via NAT gateway / direct (Elastic IP)"),
                        ("nat_gateway", "direct"), "AWS: up to 100 Gbit/s per NAT gateway", "")


def _neighbours(r: dict) -> list[Line]:
    value = get(r, "noisy_over_quiet_p99")
    rounds = ", ".join(f"{x['noisy_over_quiet_p99']:.2f}" for x in r.get("per_round", []))
    kernel = get(r, "compared", "cpu-slice-us 0", "median_of_rounds", "noisy_over_quiet_p99")
    detail = (f" (rounds {rounds}" + (f"; the kernel's default CPU slice in the same run: "
                                      f"{kernel:.2f}×" if kernel is not None else "") + ")"
              if rounds else "")
    return [Line("neighbours", "a function's warm p99 beside another spinning at full "
                 "concurrency / quiet (median of rounds)",
                 "—" if value is None else f"{value:.2f}×{detail}", "≤ 2×",
                 _le(value, 2.0), "AWS: one microVM per environment", "neighbours.png")]


def _fabric(r: dict) -> list[Line]:
    """bench/fabric.py: the function on the other host than its resource (no goal set)."""
    same, across = get(r, "cold_start", "same_host"), get(r, "cold_start", "across_fabric")
    ratio, p99 = get(r, "cold_start", "p50_ratio"), get(r, "cold_start", "p99_ratio")
    cold = ("—" if ratio is None else f"{ratio:.2f}×" if not (same and across) else
            f"{_num(across['p50_ms'])} / {_num(same['p50_ms'])} ms = {ratio:.2f}× (p99 "
            f"{p99:.2f}×)")
    out = [Line("fabric", "VPC cold start with the function on the other host / on the "
                "resource's host, p50 (PostgreSQL, two namespace-hosts with agents and FRR, "
                "interleaved)", cold, "—", None, "issue 20 asks for the ratio", "fabric.png")]
    paths = get(r, "datapath", "paths") or {}
    for key, label, unit, fmt in (
            ("throughput_ratio", "TCP throughput across the EVPN fabric (ENI) / direct veth",
             "throughput_gbit_s", "{:.1f} Gbit/s"),
            ("conn_rate_ratio", "new connections/s across the EVPN fabric (ENI) / direct veth",
             "connections_per_s", "{:,}/s")):
        value = get(r, "datapath", "ratios", key)
        shown = "—" if value is None else f"{value:.3f}"
        figures = [get(paths, p, unit) for p in ("eni_across_fabric", "direct_veth",
                                                  "eni_same_host")]
        if value is not None and None not in figures:
            shown += (f" ({fmt.format(figures[0])} / {fmt.format(figures[1])}; same host "
                      f"through the ENI: {fmt.format(figures[2])})")
        out.append(Line("fabric", label, shown, "—", None,
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
    tail = ["", ("Rerun: `lambdaplane bench all`, or one benchmark: `lambdaplane bench "
                 f"{{{','.join(name.replace('_', '-') for name in results)}}}`; JSON and PNG "
                 "files sit beside this summary.")]
    return "\n".join(head) + "\n" + table(rows) + "\n".join(tail) + "\n"


def table(rows: list[Line], plots: str = "") -> str:
    """The lines as a markdown table; each figure links to its plot under `plots`."""
    out = ["| benchmark | figure | measured | goal | met | compared with |",
           "|---|---|---|---|---|---|"]
    for line in rows:
        met = {True: "yes", False: "**no**", None: "—"}[line.met]
        figure = f"[{line.figure}]({plots}{line.plot})" if line.plot else line.figure
        out.append(f"| {line.benchmark} | {figure} | {line.measured} | {line.goal} | {met} | "
                   f"{line.anchor} |")
    return "\n".join(out) + "\n"


def write(out_dir: Path, results: dict[str, dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = next((r["machine"] for r in results.values() if "machine" in r), None)
    path = out_dir / "summary.md"
    path.write_text(markdown(results, machine))
    (out_dir / "summary.json").write_text(json.dumps(
        {"machine": machine, "lines": [asdict(line) for line in lines(results)]}, indent=2)
        + "\n")
    return path
