#!/usr/bin/env python3
"""Profile octopus-cards under load with py-spy (pip install py-spy).

    python bench/profile.py [--scenario get|get_one|login|refresh|logout_login|products|charges|order|order_get]
                            [--seconds 20] [--database sqlite|postgresql] [--gil]
                            [--server octopus|fastapi|starlette]

Starts the server on a fresh database (as bench/run.py does), loads it with wrk at 32
connections, records it with `py-spy record` meanwhile, and writes to bench/results/:
<stamp>-profile-<scenario>.txt (collapsed stacks), .speedscope.json (open in speedscope.app)
and prints the functions with the most samples, inclusive and self. --gil samples only the
thread holding the GIL: the view that matters for a one-process Python server. The voucher
scenarios profile octopus-cards only (the baselines do not serve them).
"""

import argparse
import collections
import datetime
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import run


def summarise(collapsed, top=30):
    inclusive, self_time, total = collections.Counter(), collections.Counter(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        self_time[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive (% of samples with the function on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self (% of samples where it is the innermost frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    return "\n".join(lines)


def speedscope(collapsed, name):
    frames, index, samples, weights = [], {}, [], []
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        ids = []
        for frame in stack.split(";"):
            if frame not in index:
                index[frame] = len(frames)
                frames.append({"name": frame})
            ids.append(index[frame])
        samples.append(ids)
        weights.append(int(count))
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="get", choices=list(run.SCENARIOS))
    parser.add_argument("--server", default="octopus", choices=run.SERVERS)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--gil", action="store_true", help="only sample the thread holding the GIL")
    parser.add_argument("--output", default=str(run.RESULTS))
    args = parser.parse_args()
    if run.SCENARIOS[args.scenario].get("octopus_only") and args.server != "octopus":
        parser.error(f"--scenario {args.scenario}: octopus-cards only (the baselines do not serve it)")
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not pyspy or not shutil.which("wrk"):
        sys.exit("profile: needs py-spy (pip install py-spy) and wrk (apt-get install wrk)")
    signal.signal(signal.SIGTERM, run.on_sigterm)
    bench_args = run.parse_args(["--database", args.database, "--warmup", "2", "--scenarios", args.scenario])
    ws = run.Workspace(bench_args)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = Path(args.output) / f"{stamp}-profile-{args.server}-{args.scenario}{'-gil' if args.gil else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        bench = run.Bench(ws, bench_args)
        bench.setup()
        spec = run.SCENARIOS[args.scenario]
        warm_env = bench.prepare(args.scenario, args.server, 1, 2, "warm")
        env = bench.prepare(args.scenario, args.server, 1, args.seconds + 5, "load")
        with run.Server(ws, args.server, 1, bench.database_url) as server:
            run.run_wrk(ws, server.url, spec["script"], 2, spec["threads"], warm_env, tag="warm")
            raw = stem.with_suffix(".txt")
            cmd = [
                pyspy,
                "record",
                "-p",
                str(server.process.pid),
                "-d",
                str(args.seconds),
                "-r",
                str(args.rate),
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
            ] + (["--gil"] if args.gil else [])
            recorder = run.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            result = run.run_wrk(ws, server.url, spec["script"], args.seconds + 2, spec["threads"], env, tag="load")
            recorder.wait(timeout=60)
            run.stop_process(recorder)
        collapsed = raw.read_text()
        stem.with_suffix(".speedscope.json").write_text(
            json.dumps(speedscope(collapsed, f"{args.server} {args.scenario}"))
        )
        rps = result["requests"] / (result["duration_us"] / 1e6)
        print(
            f"{args.server} {args.scenario}: {rps:.0f} rps under the profiler, errors {sum(result['errors'].values())}"
        )
        print(summarise(collapsed))
        print(f"\ncollapsed stacks: {raw}\nspeedscope:       {stem.with_suffix('.speedscope.json')}")
        return 0
    except run.BenchError as exc:
        print(f"profile: {exc}", file=sys.stderr)
        return 1
    finally:
        run.stop_all()
        ws.close()


if __name__ == "__main__":
    sys.exit(main())
