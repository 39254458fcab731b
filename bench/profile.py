#!/usr/bin/env python3
"""Profile octopus-cards under load with py-spy (pip install py-spy).

    python bench/profile.py [--scenario get|get_one|login|refresh|logout_login|products|charges|order|order_get]
                            [--seconds 20] [--database sqlite|postgresql] [--gil]
                            [--server octopus|fastapi|starlette|floor]
    python bench/profile.py --webhooks drain|stream|serve [--events-per-s 300] [--seconds 20] [--gil]

Starts the server on a fresh database (as bench/run.py does), loads it with wrk at 32
connections, records it with `py-spy record` meanwhile, and writes to bench/results/:
<stamp>-profile-<scenario>.txt (collapsed stacks), .speedscope.json (open in speedscope.app)
and prints the functions with the most samples, inclusive and self. --gil samples only the
thread holding the GIL: the view that matters for a one-process Python server. A server is profiled
only in the scenarios it serves (the floor: auth, currencies, products and order; the other
baselines: auth and currencies).

--webhooks profiles webhook delivery instead, set up as bench/run.py's webhook probe does (a
client whose endpoint is bench/webhook_receiver.py on 127.0.0.1, events recorded by the runner):
  drain   one `octopus-cards worker` delivering a backlog queued before it started (more than it
          delivers in --seconds), profiled from its first delivery;
  stream  that worker while events are recorded at --events-per-s;
  serve   `octopus-cards serve` (1 worker, OCTOPUS_BACKGROUND=true) loaded by wrk with the get
          scenario while events are recorded at --events-per-s: the cost of delivering in-process.
"""

import argparse
import collections
import datetime
import json
import shutil
import signal
import subprocess
import sys
import time
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
    parser.add_argument(
        "--webhooks", choices=("drain", "stream", "serve"), help="profile webhook delivery instead (see above)"
    )
    parser.add_argument(
        "--events-per-s", type=int, default=run.WEBHOOK_RATE, help="--webhooks stream|serve: events recorded a second"
    )
    args = parser.parse_args()
    if args.server not in run.scenario_servers(args.scenario, run.SERVERS):
        parser.error(f"--scenario {args.scenario}: {args.server} does not serve it")
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not pyspy or not shutil.which("wrk"):
        sys.exit("profile: needs py-spy (pip install py-spy) and wrk (apt-get install wrk)")
    signal.signal(signal.SIGTERM, run.on_sigterm)
    if args.webhooks:
        return profile_webhooks(args, pyspy)
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


def record(pyspy, pid, path, args):
    """`py-spy record` of process `pid` for args.seconds, started in the background."""
    cmd = [pyspy, "record", "-p", str(pid), "-d", str(args.seconds), "-r", str(args.rate), "-f", "raw"]
    cmd += ["-o", str(path), "--nonblocking"] + (["--gil"] if args.gil else [])
    return run.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_webhooks(args, pyspy):
    bench_args = run.parse_args(["--database", args.database, "--webhooks-only"])
    ws = run.Workspace(bench_args)
    probe = run.WebhookProbe(ws, bench_args)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"webhooks-{args.webhooks}"
    stem = Path(args.output) / f"{stamp}-profile-{name}{'-gil' if args.gil else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    raw = stem.with_suffix(".txt")
    try:
        url, hooked, _, token, _, _ = probe.prepare()
        stream, note = None, ""
        if args.webhooks == "drain":  # more than the worker delivers while it is recorded
            backlog = probe.feeder.burst(hooked, 500 * (args.seconds + 3))
            process = probe.start_worker(url)
            probe.first_arrival(backlog, process)
        elif args.webhooks == "stream":
            process = probe.start_worker(url)
            time.sleep(2)  # its start-up
        else:
            settings = dict(run.WEBHOOK_ENV, OCTOPUS_BACKGROUND="true")
            server = run.Server(ws, "octopus", 1, url, label=name, env=settings).start()
            process = server.process
            env = {"BENCH_PATH": "/api/v1/currencies", "BENCH_TOKEN": token}
            run.run_wrk(ws, server.url, "get.lua", 2, 1, env, tag="warm")
        if args.webhooks != "drain":
            stream = run.EventStream(probe.feeder, hooked, args.events_per_s)
            stream.start()
            time.sleep(probe.LEAD_IN)
        started, cpu = time.time(), run.process_cpu(process.pid)
        recorder = record(pyspy, process.pid, raw, args)
        if args.webhooks == "serve":
            result = run.run_wrk(ws, server.url, "get.lua", args.seconds + 2, 1, env, tag="load")
            rps = result["requests"] / (result["duration_us"] / 1e6)
            note = f", {rps:.0f} GET rps (errors {sum(result['errors'].values())})"
        recorder.wait(timeout=args.seconds + 60)
        ended, cpu = time.time(), run.process_cpu(process.pid) - cpu
        if stream:
            stream.stop()
        probe.take()
        delivered = sum(started <= min(times) <= ended for times in probe.arrivals.values())
        per = f", {1000 * cpu / delivered:.2f} ms CPU a delivery" if delivered and args.webhooks != "serve" else ""
        print(
            f"{name}: {delivered / (ended - started):.0f} deliveries/s under the profiler, CPU "
            f"{100 * cpu / (ended - started):.0f}%{per}{note}"
        )
        collapsed = raw.read_text()
        stem.with_suffix(".speedscope.json").write_text(json.dumps(speedscope(collapsed, name)))
        print(summarise(collapsed))
        print(f"\ncollapsed stacks: {raw}\nspeedscope:       {stem.with_suffix('.speedscope.json')}")
        return 0
    except run.BenchError as exc:
        print(f"profile: {exc}", file=sys.stderr)
        return 1
    finally:
        run.stop_all()
        probe.close()
        ws.close()


if __name__ == "__main__":
    sys.exit(main())
