#!/usr/bin/env python3
"""Quarry's chat path side by side with the LiteLLM proxy, on loopback (run by run.sh).

Starts the Bedrock emulator, Quarry's gateway-server and the LiteLLM proxy (one model,
Bedrock Converse, endpoint = the emulator), pins them to cores, verifies that both gateways
answer the same OpenAI Chat Completions body with 200 and send the emulator the same Converse
call, then measures with oha: direct to the emulator (the baseline), through Quarry and
through LiteLLM, interleaved rounds, at two model latencies; then the highest rate each
gateway holds with p99 overhead under 10 ms and no error. Writes
bench/results/peer-comparison.{md,json,png}.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

MODEL = "us.amazon.nova-lite-v1:0"
MESSAGE = "Give me a short status update."
# The same OpenAI Chat Completions body for both gateways ...
OPENAI_BODY = {"model": MODEL, "messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 256}
# ... and the Converse call both make with it (checked against the emulator's record).
CONVERSE_BODY = {
    "messages": [{"role": "user", "content": [{"text": MESSAGE}]}],
    "inferenceConfig": {"maxTokens": 256},
}
QUARRY_KEY = "qk_bench_key"  # gateway-server's fixed key
LITELLM_KEY = "sk-bench-peer"  # LiteLLM's master key (its keys must start with sk-)
CONCURRENCIES = [1, 16, 64]
OVERHEAD_LIMIT_MS = 10.0
# For a gateway that holds no rate under the limit above, the search runs again with this one,
# so that the table still says where it stands.
FALLBACK_LIMIT_MS = 50.0
# Cores: the gateway under test alone on one; the emulator and the load generator on the other.
GATEWAY_CORE = "1"
LOAD_CORE = "0"
CLK_TCK = os.sysconf("SC_CLK_TCK")

started_procs = []


def log(msg):
    print(f"[peer {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes


class Proc:
    def __init__(self, name, argv, env, core, logdir):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.log_file = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env)
        self.popen = subprocess.Popen(
            ["taskset", "-c", core] + argv,
            env=full_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped with its workers
        )
        started_procs.append(self)
        self.pid = self.popen.pid

    def wait_for(self, pattern, timeout):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = rx.search(text)
            if m:
                return m
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self.log_file.close()


def stop_all(*_):
    while started_procs:
        started_procs.pop().stop()


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """utime+stime (+ reaped children's) of the process tree, in seconds."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLK_TCK


def machine_cpu():
    """(busy, steal) seconds of all cores since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def own_cpu(pids):
    """CPU of this benchmark: the servers' trees, the finished oha runs, this script."""
    import resource

    rs, rc = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(cpu_seconds(p) for p in pids) + rs.ru_utime + rs.ru_stime + rc.ru_utime + rc.ru_stime


def peak_rss(pid):
    """(sum of VmHWM over the tree in KiB, number of processes)."""
    pids = tree(pid)
    kib = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kib += int(line.split()[1])
        except OSError:
            pass
    return kib, len(pids)


# ---------------------------------------------------------------- HTTP


def http(method, url, body=None, headers=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def emulator_calls(emu):
    return http("GET", f"{emu}/_emulator/calls")[1]["total"]


def set_latency(emu, ttft_ms):
    status, _ = http("POST", f"{emu}/_emulator/latency", {"ttft_ms": ttft_ms, "per_token_ms": 0})
    assert status == 200, status


# ---------------------------------------------------------------- oha


class Oha:
    def __init__(self, binary, seconds):
        self.binary = binary
        self.seconds = seconds

    def run(self, target, concurrency, seconds=None, qps=None):
        seconds = seconds or self.seconds
        argv = [
            "taskset", "-c", LOAD_CORE, self.binary,
            "-z", f"{seconds}s", "-w", "-c", str(concurrency),
            "--no-tui", "--output-format", "json", "--http-version", "1.1",
            "--worker-threads", "1", "-t", "30s",
            "-m", "POST", "-T", "application/json", "-d", target["body"],
        ]
        for h in target["headers"]:
            argv += ["-H", h]
        if qps:
            argv += ["-q", str(qps), "--latency-correction"]
        argv.append(target["url"])
        gw = target.get("pid")
        cpu0 = cpu_seconds(gw) if gw else None
        others0 = {k: cpu_seconds(p) for k, p in target["others"].items()}
        t0 = time.time()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
        wall = time.time() - t0
        if out.returncode != 0:
            raise RuntimeError(f"oha failed: {out.stderr[-2000:]}")
        j = json.loads(out.stdout)
        statuses = {int(k): v for k, v in (j.get("statusCodeDistribution") or {}).items()}
        ok = statuses.get(200, 0)
        errors = sum(v for k, v in statuses.items() if k != 200) + sum((j.get("errorDistribution") or {}).values())
        pct = j["latencyPercentiles"]
        r = {
            "target": target["name"],
            "concurrency": concurrency,
            "qps": qps,
            "seconds": seconds,
            "requests_ok": ok,
            "errors": errors,
            "error_kinds": j.get("errorDistribution") or {},
            "statuses": statuses,
            "rps": j["summary"]["requestsPerSec"],
            "p50_ms": (pct.get("p50") or 0) * 1000,
            "p99_ms": (pct.get("p99") or 0) * 1000,
            "mean_ms": (j["summary"].get("average") or 0) * 1000,
        }
        if gw:
            cpu = cpu_seconds(gw) - cpu0
            r["cpu_s"] = cpu
            r["cpu_s_per_1k"] = cpu / ok * 1000 if ok else None
        # CPU the idle gateway(s) burnt on the shared core meanwhile (background work).
        r["others_cpu_s"] = {k: cpu_seconds(p) - others0[k] for k, p in target["others"].items()}
        r["wall_s"] = wall
        return r


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- the run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oha", required=True)
    ap.add_argument("--litellm", required=True, help="the litellm executable of bench/peer/.venv")
    ap.add_argument("--seconds", type=float, default=4, help="per measured oha run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latencies", default="0,50", help="emulator time to first token settings, ms")
    ap.add_argument("--search-seconds", type=float, default=4)
    ap.add_argument("--results", default="bench/results")
    ap.add_argument("--rundir", default="bench/peer/.run")
    args = ap.parse_args()
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    search_seconds = int(args.search_seconds) if args.search_seconds == int(args.search_seconds) else args.search_seconds
    latencies = [int(x) for x in args.latencies.split(",")]
    rundir = Path(args.rundir)
    rundir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
    t_start = time.time()
    try:
        figures = measure(args, seconds, search_seconds, latencies, rundir)
    finally:
        stop_all()
    figures["measure_seconds"] = round(time.time() - t_start, 1)
    (results / "peer-comparison.json").write_text(json.dumps(figures, indent=2) + "\n")
    (results / "peer-comparison.md").write_text(markdown(figures))
    chart(figures, results / "peer-comparison.png")
    log(f"wrote {results}/peer-comparison.{{md,json,png}} ({figures['measure_seconds']} s of measurement)")


def measure(args, seconds, search_seconds, latencies, rundir):
    oha = Oha(args.oha, seconds)
    aws_env = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    log("starting the emulator (core 0), Quarry's gateway-server and the LiteLLM proxy (core 1)")
    emu_p = Proc("bedrock-emulator", ["./target/release/bedrock-emulator", "--port", "0"], {"RUST_LOG": "warn"}, LOAD_CORE, rundir)
    emu = emu_p.wait_for(r"bedrock-emulator listening on (\S+)", 20).group(1)

    quarry_p = Proc(
        "quarry-gateway",
        ["./target/release/gateway-server"],
        {**aws_env, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emu, "RUST_LOG": "warn"},
        GATEWAY_CORE,
        rundir,
    )
    quarry = quarry_p.wait_for(r"gateway listening on (\S+)", 20).group(1)

    cfg = rundir / "litellm.yaml"
    cfg.write_text(
        f"""# Generated by bench/peer/peer.py: one model, Bedrock Converse on the emulator.
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: bedrock/converse/{MODEL}
      aws_bedrock_runtime_endpoint: {emu}
      aws_access_key_id: bench
      aws_secret_access_key: bench
      aws_region_name: us-east-1
litellm_settings:
  telemetry: false
  set_verbose: false
  json_logs: false
  turn_off_message_logging: true
general_settings:
  master_key: {LITELLM_KEY}
  disable_spend_logs: true
  disable_error_logs: true
"""
    )
    log_cfg = Path(__file__).resolve().parent / "uvicorn-log.json"
    port = free_port()
    litellm_p = Proc(
        "litellm",
        [args.litellm, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1", "--telemetry", "False", "--log_config", str(log_cfg)],
        {**aws_env, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
         "DISABLE_SCHEMA_UPDATE": "true", "PYTHONUNBUFFERED": "1"},
        GATEWAY_CORE,
        rundir,
    )
    litellm = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if http("GET", f"{litellm}/health/liveliness", timeout=2)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if litellm_p.popen.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"LiteLLM did not start; see {litellm_p.log_path}")
        time.sleep(0.5)
    log(f"emulator {emu}, Quarry {quarry}, LiteLLM {litellm}")

    # ---- verification: both answer 200 to the same body and reach the emulator with the same call.
    verification = {}
    for name, url, key in (("quarry", quarry, QUARRY_KEY), ("litellm", litellm, LITELLM_KEY)):
        before = emulator_calls(emu)
        status, body = http("POST", f"{url}/v1/chat/completions", OPENAI_BODY, {"authorization": f"Bearer {key}"})
        after = emulator_calls(emu)
        last = http("GET", f"{emu}/_emulator/requests?limit=1")[1]["requests"][0]
        v = {
            "status": status,
            "emulator_calls_added": after - before,
            "emulator_saw": {"operation": last["operation"], "model_id": last["model_id"], "body": last["body"]},
            "same_converse_body_as_direct": last["body"] == CONVERSE_BODY,
            "answer_text": body["choices"][0]["message"]["content"][:60] if isinstance(body, dict) else body,
        }
        verification[name] = v
        log(f"{name}: HTTP {status}, emulator calls +{v['emulator_calls_added']}, {last['operation']} {last['model_id']}, same Converse body as the direct baseline: {v['same_converse_body_as_direct']}")
        if status != 200 or v["emulator_calls_added"] != 1 or last["operation"] != "Converse":
            raise RuntimeError(f"{name} did not reach the emulator as expected: {v}")
    status, direct_answer = http("POST", f"{emu}/model/{MODEL}/converse", CONVERSE_BODY)
    verification["direct"] = {"status": status, "unsigned_request_accepted": status == 200}
    if status != 200:
        raise RuntimeError(f"direct Converse: {status} {direct_answer}")
    verification["same_answer_text"] = (
        verification["quarry"]["answer_text"] == verification["litellm"]["answer_text"]
        == direct_answer["output"]["message"]["content"][0]["text"][:60]
    )

    openai_body = json.dumps(OPENAI_BODY, separators=(",", ":"))
    pids = {"quarry": quarry_p.pid, "litellm": litellm_p.pid}
    targets = {
        "direct": {"name": "direct", "url": f"{emu}/model/{MODEL}/converse",
                   "body": json.dumps(CONVERSE_BODY, separators=(",", ":")), "headers": [], "pid": None},
        "quarry": {"name": "quarry", "url": f"{quarry}/v1/chat/completions", "body": openai_body,
                   "headers": [f"authorization: Bearer {QUARRY_KEY}"], "pid": quarry_p.pid},
        "litellm": {"name": "litellm", "url": f"{litellm}/v1/chat/completions", "body": openai_body,
                    "headers": [f"authorization: Bearer {LITELLM_KEY}"], "pid": litellm_p.pid},
    }
    for t in targets.values():
        t["others"] = {k: p for k, p in pids.items() if k != t["name"]}

    servers = [emu_p.pid, quarry_p.pid, litellm_p.pid]
    busy0, steal0 = machine_cpu()
    own0, wall0 = own_cpu(servers), time.time()
    idle0 = {k: cpu_seconds(p) for k, p in pids.items()}
    time.sleep(5)
    idle_cpu = {k: (cpu_seconds(p) - idle0[k]) / 5 for k, p in pids.items()}
    log(f"idle CPU (fraction of a core): {idle_cpu}")

    runs = []
    summary = {}
    search = {}
    rss_closed = {}
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    for ttft in latencies:
        set_latency(emu, ttft)
        log(f"model latency {ttft} ms: warm-up (2 s at concurrency 16 per target)")
        for t in targets.values():
            r = oha.run(t, 16, seconds=2)
            if r["errors"]:
                raise RuntimeError(f"warm-up errors on {t['name']}: {r}")
        for rnd in range(args.rounds):
            order = ["quarry", "litellm"] if rnd % 2 == 0 else ["litellm", "quarry"]
            for c in CONCURRENCIES:
                for name in ["direct"] + order:
                    r = oha.run(targets[name], c)
                    r.update({"model_latency_ms": ttft, "round": rnd + 1})
                    runs.append(r)
                    log(f"  {ttft} ms, round {rnd + 1}, c={c:>2} {name:<7} p50 {r['p50_ms']:8.3f} p99 {r['p99_ms']:8.3f} ms, {r['rps']:8.0f} req/s, errors {r['errors']}")
        summary[str(ttft)] = summarize(runs, ttft, args.rounds)
    # After every closed-loop round (at most 64 connections), before the open-loop search.
    for name, p in pids.items():
        kib, n = peak_rss(p)
        rss_closed[name] = {"peak_rss_kib": kib, "processes": n}

    for ttft in latencies:
        set_latency(emu, ttft)
        search[str(ttft)] = {}
        direct_cache = {}
        for name in ("quarry", "litellm"):
            res = max_rate(oha, targets, name, ttft, search_seconds, OVERHEAD_LIMIT_MS, direct_cache)
            if res["max_qps"] == 0:
                res["fallback"] = max_rate(oha, targets, name, ttft, search_seconds, FALLBACK_LIMIT_MS, direct_cache)
            search[str(ttft)][name] = res

    busy1, steal1 = machine_cpu()
    wall = time.time() - wall0
    ncpu = os.cpu_count() or 1
    foreign = {
        "wall_s": round(wall, 1),
        "foreign_cpu_s": round(busy1 - busy0 - (own_cpu(servers) - own0), 1),
        "steal_cpu_s": round(steal1 - steal0, 1),
    }
    foreign["foreign_share"] = max(0.0, foreign["foreign_cpu_s"]) / (wall * ncpu)
    foreign["steal_share"] = foreign["steal_cpu_s"] / (wall * ncpu)
    log(f"other work on the machine meanwhile: {foreign}")

    rss = {}
    for name, p in pids.items():
        kib, n = peak_rss(p)
        rss[name] = {"peak_rss_kib": kib, "processes": n, "after_closed_loop_kib": rss_closed[name]["peak_rss_kib"]}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench-peer",
        "machine": machine(),
        "versions": versions(args),
        "setup": {
            "model": MODEL,
            "openai_body": OPENAI_BODY,
            "converse_body": CONVERSE_BODY,
            "cores": {"gateways": GATEWAY_CORE, "emulator_and_oha": LOAD_CORE},
            "seconds_per_run": seconds,
            "rounds": args.rounds,
            "concurrencies": CONCURRENCIES,
            "model_latencies_ms": latencies,
            "overhead_limit_ms": OVERHEAD_LIMIT_MS,
            "fallback_limit_ms": FALLBACK_LIMIT_MS,
            "search_seconds_per_step": search_seconds,
        },
        "verification": verification,
        "idle_cpu_fraction": idle_cpu,
        "summary": summary,
        "max_rate": search,
        "peak_rss": rss,
        "loadavg": {"start": load_start, "end": Path("/proc/loadavg").read_text().split()[:3]},
        "other_work": foreign,
        "runs": runs,
    }


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summarize(runs, ttft, rounds):
    out = {}
    for c in CONCURRENCIES:
        rows = {}
        by = {n: {r["round"]: r for r in runs if r["model_latency_ms"] == ttft and r["concurrency"] == c and r["target"] == n}
              for n in ("direct", "quarry", "litellm")}
        for n in ("direct", "quarry", "litellm"):
            rs = list(by[n].values())
            row = {
                "p50_ms": median([r["p50_ms"] for r in rs]),
                "p99_ms": median([r["p99_ms"] for r in rs]),
                "rps": median([r["rps"] for r in rs]),
                "errors": sum(r["errors"] for r in rs),
            }
            if n != "direct":
                # Overhead per round (gateway minus the direct run just before it), then the median.
                for p in ("p50", "p99"):
                    row[f"overhead_{p}_ms"] = median([by[n][k][f"{p}_ms"] - by["direct"][k][f"{p}_ms"] for k in by[n] if k in by["direct"]])
                # Summed over the rounds (CPU is counted in 10 ms ticks: few requests per run at c=1).
                ok = sum(r["requests_ok"] for r in rs)
                row["cpu_s_per_1k"] = sum(r["cpu_s"] for r in rs) / ok * 1000 if ok else None
            rows[n] = row
        out[str(c)] = rows
    return out


def max_rate(oha, targets, name, ttft, seconds, limit_ms, direct_cache):
    """Highest --qps step with p99(gateway) - p99(direct at the same rate) < limit_ms, 0 errors,
    and the rate actually achieved: doubling from 100 req/s, then 3 bisection steps.
    direct_cache holds the direct runs of this model latency by rate (shared by the gateways)."""
    steps = []

    def conc(rate):
        # Enough connections for the requests in flight at this rate (model latency + slack).
        return int(min(1000, max(64, math.ceil(rate * (ttft + 20) / 1000 * 2))))

    def probe(rate):
        # One retry when a step fails on latency alone: a single noisy window (other work on
        # the shared cores) must not end the search; errors fail at once.
        return step(rate) or (
            steps[-1]["why"] == "p99 overhead" and steps[-1]["overhead_p99_ms"] < 3 * limit_ms and step(rate)
        )

    def step(rate):
        c = conc(rate)
        if rate not in direct_cache:
            direct_cache[rate] = oha.run(targets["direct"], c, seconds=seconds, qps=rate)
        d = direct_cache[rate]
        g = oha.run(targets[name], c, seconds=seconds, qps=rate)
        over = g["p99_ms"] - d["p99_ms"]
        achieved = g["requests_ok"] / seconds
        ok = g["errors"] == 0 and over < limit_ms and achieved >= 0.95 * rate
        why = "ok" if ok else ("errors" if g["errors"] else ("p99 overhead" if over >= limit_ms else "rate not achieved"))
        steps.append({"qps": rate, "concurrency": c, "direct_p99_ms": d["p99_ms"], "gateway_p99_ms": g["p99_ms"],
                      "gateway_p50_ms": g["p50_ms"], "overhead_p99_ms": over, "errors": g["errors"],
                      "achieved_rps": achieved, "cpu_s_per_1k": g.get("cpu_s_per_1k"), "pass": ok, "why": why})
        log(f"  max rate (p99 overhead < {limit_ms:g} ms), {ttft} ms, {name}: {rate} req/s (c={c}): p99 overhead {over:.2f} ms, errors {g['errors']}, achieved {achieved:.0f}/s -> {why}")
        return ok

    lo, hi = 0, None
    rate = 100
    while rate <= 51200:
        if probe(rate):
            lo = rate
            rate *= 2
        else:
            hi = rate
            break
    if hi is None:
        return {"limit_ms": limit_ms, "max_qps": lo, "capped": True, "steps": steps}
    if lo == 0:
        # Below the first step: halve down to 25 req/s.
        rate = hi // 2
        while rate >= 25:
            if probe(rate):
                lo = rate
                break
            hi = rate
            rate //= 2
    for _ in range(3):
        if lo == 0:
            break
        mid = int(round((lo + hi) / 2 / 10) * 10)
        if mid in (lo, hi):
            break
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return {"limit_ms": limit_ms, "max_qps": lo, "first_failing_qps": hi, "capped": False, "steps": steps}


def machine():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()),
        "cpu_model": model,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
    }


def versions(args):
    v = {
        "litellm": metadata.version("litellm"),
        "python": platform.python_version(),
        "uvicorn": metadata.version("uvicorn"),
        "uvloop": metadata.version("uvloop"),
        "matplotlib": metadata.version("matplotlib"),
        "oha": subprocess.run([args.oha, "--version"], capture_output=True, text=True).stdout.strip().split()[-1],
    }
    try:
        v["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return v


# ---------------------------------------------------------------- outputs


def f(x, digits=2):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def markdown(fig):
    s = fig["setup"]
    m = fig["machine"]
    v = fig["versions"]
    out = []
    w = out.append
    w("# Quarry vs. the LiteLLM proxy: gateway overhead on the chat path\n")
    w(f"Command: `make bench-peer` (runs `bench/peer/run.sh`). Date: {fig['date']}.  ")
    w(f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}.  ")
    w(f"Versions: LiteLLM {v['litellm']} (Python {v['python']}, uvicorn {v['uvicorn']}, uvloop {v['uvloop']}), "
      f"oha {v['oha']}, {v.get('rustc', 'rustc')}; Quarry from this tree (`--release`, fat LTO).\n")
    if fig["other_work"]["foreign_share"] > 0.1:
        w(f"**Noisy run: other work used {f(100 * fig['other_work']['foreign_share'], 0)}% of the machine's cores while this ran "
          "(see Memory below); p99 figures and the rate search are unreliable. Re-run `make bench-peer` on a quiet machine before "
          "quoting them.**\n")
    w("Set-up, all on loopback:\n")
    w(f"- Upstream: the Bedrock emulator (`./target/release/bedrock-emulator --port 0`), model `{s['model']}`, "
      f"time to first token {' and '.join(str(x) for x in s['model_latencies_ms'])} ms (admin API `POST /_emulator/latency`), no per-token delay.")
    w("- Quarry: `./target/release/gateway-server`: the production chat-handler router and Bedrock adapter (AWS SDK), "
      "configuration in memory, cache, idempotency, admission and ledger no-ops (no DynamoDB/SSM I/O per request), no log subscriber; "
      "API-key authentication on. Tokio runtime with one worker (one core in its affinity mask).")
    w("- LiteLLM: `litellm --config ... --num_workers 1` (uvicorn + uvloop, one process), model "
      f"`bedrock/converse/{s['model']}` with `aws_bedrock_runtime_endpoint` = the emulator, dummy credentials, us-east-1; "
      "master key on (auth), no database, spend/error logs off, message logging off, telemetry off, uvicorn access log off, "
      "local model-cost map.")
    w(f"- Cores (`taskset`): both gateways on core {s['cores']['gateways']} (the one under load is the only busy process there); "
      f"the emulator and oha on core {s['cores']['emulator_and_oha']}.")
    w(f"- Load: oha, HTTP/1.1 keep-alive (`--disable-keepalive` off), TCP_NODELAY (oha sets it on every connection), one worker thread, "
      f"{s['seconds_per_run']} s per run, closed loop at concurrency {', '.join(map(str, s['concurrencies']))}. "
      "The same OpenAI Chat Completions body to both gateways; the direct baseline POSTs the Converse call both of them make "
      "(checked against the emulator's record) to `/model/ID/converse`.")
    w(f"- {s['rounds']} rounds per setting, interleaved (direct, Quarry, LiteLLM; then direct, LiteLLM, Quarry; ...), after a 2 s warm-up per target; "
      "figures are the median over rounds. Overhead = gateway percentile minus the direct percentile of the same round, "
      "same concurrency (median over rounds).\n")

    w("## Latency and overhead\n")
    w("| Model latency | Concurrency | Direct p50 | Direct p99 | Quarry p50 | Quarry p99 | **Quarry overhead p50** | **Quarry overhead p99** | "
      "LiteLLM p50 | LiteLLM p99 | **LiteLLM overhead p50** | **LiteLLM overhead p99** | Errors (all runs) |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for ttft, rows in fig["summary"].items():
        for c, r in rows.items():
            d, q, l = r["direct"], r["quarry"], r["litellm"]
            w(f"| {ttft} ms | {c} | {f(d['p50_ms'], 3)} | {f(d['p99_ms'], 3)} | {f(q['p50_ms'], 3)} | {f(q['p99_ms'], 3)} | "
              f"**{f(q['overhead_p50_ms'], 3)}** | **{f(q['overhead_p99_ms'], 3)}** | {f(l['p50_ms'], 3)} | {f(l['p99_ms'], 3)} | "
              f"**{f(l['overhead_p50_ms'], 3)}** | **{f(l['overhead_p99_ms'], 3)}** | {d['errors'] + q['errors'] + l['errors']} |")
    w("\nAll latencies in ms.\n")

    w("## Throughput and CPU\n")
    w("| Model latency | Concurrency | Direct req/s | Quarry req/s | LiteLLM req/s | Quarry CPU-s / 1,000 req | LiteLLM CPU-s / 1,000 req |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for ttft, rows in fig["summary"].items():
        for c, r in rows.items():
            d, q, l = r["direct"], r["quarry"], r["litellm"]
            w(f"| {ttft} ms | {c} | {f(d['rps'], 0)} | {f(q['rps'], 0)} | {f(l['rps'], 0)} | {f(q['cpu_s_per_1k'], 3)} | {f(l['cpu_s_per_1k'], 3)} |")
    w("\nCPU = utime + stime of the gateway's process tree (/proc/PID/stat) across the run, per 1,000 successful requests, "
      f"summed over the rounds (clock ticks of {1000 // CLK_TCK} ms). Closed-loop req/s at concurrency 64 with a 0 ms model is the saturation throughput "
      "of one core for the gateway (oha and the emulator share the other).\n")

    w(f"## Highest rate with p99 overhead under {f(s['overhead_limit_ms'], 0)} ms and no error\n")
    w("| Model latency | Gateway | p99 overhead limit | Max rate (req/s) | p99 overhead there | CPU-s / 1,000 req there | First failing rate | Why it failed there |")
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for ttft, gws in fig["max_rate"].items():
        for name, top in gws.items():
            for res in [top] + ([top["fallback"]] if "fallback" in top else []):
                at = next((st for st in res["steps"] if st["qps"] == res["max_qps"] and st["pass"]), None)
                fail = next((st for st in reversed(res["steps"]) if st["qps"] == res.get("first_failing_qps")), None)
                why = "–"
                if fail:
                    why = (f"{fail['why']} (p99 overhead {f(fail['overhead_p99_ms'], 1)} ms, "
                           f"{fail['errors']} errors, {f(fail['achieved_rps'], 0)} req/s served)")
                limit = f"{f(res['limit_ms'], 0)} ms" + (" (fallback)" if res is not top else "")
                w(f"| {ttft} ms | {'Quarry' if name == 'quarry' else 'LiteLLM'} | {limit} | "
                  f"{f(res['max_qps'], 0) if res['max_qps'] else 'none ≥ 25'}{' (cap)' if res['capped'] else ''} | "
                  f"{f(at['overhead_p99_ms'], 2) + ' ms' if at else '–'} | {f(at['cpu_s_per_1k'], 3) if at else '–'} | "
                  f"{f(fail['qps'], 0) if fail else '–'} | {why} |")
    w(f"\nOpen loop (`oha -q RATE --latency-correction`, {s['search_seconds_per_step']} s per step, connections sized to the requests in flight, "
      "64 to 1,000): doubling from 100 req/s (halving down to 25 when 100 fails), then three bisection steps; at each rate the direct "
      "baseline is measured at the same rate and connection count. A step fails on any error, on p99 overhead ≥ the limit (twice in a row when "
      f"within 3x the limit: one retry against noise), or when under 95% of the rate is served. A gateway that holds no rate under {f(s['overhead_limit_ms'], 0)} ms is searched again with a "
      f"{f(s['fallback_limit_ms'], 0)} ms limit (fallback row).\n")

    w("## Memory\n")
    w("| Gateway | Peak RSS after the closed-loop rounds (≤ 64 connections), MB | Peak RSS after the rate search (≤ 1,000 connections), MB | Processes | Idle CPU (share of a core) |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for name, r in fig["peak_rss"].items():
        w(f"| {'Quarry' if name == 'quarry' else 'LiteLLM'} | {f(r['after_closed_loop_kib'] / 1024, 1)} | {f(r['peak_rss_kib'] / 1024, 1)} | "
          f"{r['processes']} | {f(fig['idle_cpu_fraction'][name], 3)} |")
    w("\nVmHWM from /proc/PID/status, summed over the gateway's process tree (one process each here: LiteLLM with "
      "`--num_workers 1` serves from its main process). Idle CPU: measured over 5 s before any load.\n")
    o = fig["other_work"]
    w(f"Other work on the machine during the measurement: {f(max(0.0, o['foreign_cpu_s']), 0)} CPU-s over {f(o['wall_s'], 0)} s, "
      f"{f(100 * o['foreign_share'], 0)}% of the {m['nproc']} cores (all CPU time in /proc/stat minus this benchmark's processes); "
      f"hypervisor steal {f(100 * o['steal_share'], 1)}%. It shows as noise, mostly in p99 and in the rate search.\n")

    vq, vl = fig["verification"]["quarry"], fig["verification"]["litellm"]
    w("## Verification (at start)\n")
    w(f"- Quarry: HTTP {vq['status']}, emulator Converse calls +{vq['emulator_calls_added']}, same Converse body as the direct baseline: {vq['same_converse_body_as_direct']}.")
    w(f"- LiteLLM: HTTP {vl['status']}, emulator Converse calls +{vl['emulator_calls_added']} (`GET /_emulator/calls`), same Converse body as the direct baseline: {vl['same_converse_body_as_direct']}.")
    w(f"- Direct: the emulator accepts the unsigned Converse POST: {fig['verification']['direct']['unsigned_request_accepted']}; "
      f"all three return the same text: {fig['verification']['same_answer_text']}.\n")
    w("## Caveats\n")
    w("- Per request, Quarry here parses, authenticates the key (SHA-256 lookup), resolves the model, builds and signs the Converse call "
      "(AWS SDK), prices the answer from pricing.yaml and builds the OpenAI response; its cache, idempotency, admission and ledger are "
      "no-ops, so no DynamoDB/SSM I/O (in production a request adds those round trips; see the cache-hit table below). LiteLLM "
      "checks the master key, routes, signs with botocore, computes the cost from its model-cost map and returns it in headers; "
      "without a database it writes no spend logs either. Both run without request logs.")
    w("- One core each: Quarry's Tokio runtime gets one worker; LiteLLM runs one uvicorn worker (its default). LiteLLM scales "
      "with more worker processes on more cores, Quarry with more runtime threads (and on Lambda, one request per instance).")
    w(f"- LiteLLM runs on CPython {v['python']} (the machine's python3); another interpreter version may move its figures.")
    w("- TCP_NODELAY: oha, LiteLLM (uvloop, both sides) and the AWS SDK client set it (seen with strace); the accepted sockets "
      "of Quarry's gateway-server (`axum::serve`) and of the emulator do not, but each of their responses leaves in one `writev`, "
      "so Nagle's algorithm never holds a segment back here.")
    w("- The machine is shared (2 vCPUs of a VM, other work possibly running: see the load average above); p99 and the rate "
      "search are the most sensitive. With a 50 ms model the idle cores sleep between requests and wake-up latency likely adds to the "
      "overhead of both gateways.\n")
    w("Chart: `bench/results/peer-comparison.png`. Raw figures (every run): `bench/results/peer-comparison.json`.\n")
    return "\n".join(out) + "\n"


def chart(fig, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(fig["summary"].keys())
    floor = 0.01
    figure, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.5), squeeze=False)
    for ax, ttft in zip(axes[0], settings):
        rows = fig["summary"][ttft]
        cs = list(rows.keys())
        x = range(len(cs))
        width = 0.2
        series = [
            ("Quarry p50", "quarry", "overhead_p50_ms", "#1f77b4", None),
            ("Quarry p99", "quarry", "overhead_p99_ms", "#1f77b4", "//"),
            ("LiteLLM p50", "litellm", "overhead_p50_ms", "#d62728", None),
            ("LiteLLM p99", "litellm", "overhead_p99_ms", "#d62728", "//"),
        ]
        for i, (label, gw, key, color, hatch) in enumerate(series):
            vals = [rows[c][gw][key] for c in cs]
            shown = [max(v, floor) if v is not None else floor for v in vals]
            bars = ax.bar([xi + (i - 1.5) * width for xi in x], shown, width, label=label, color=color,
                          alpha=0.55 if hatch else 0.95, hatch=hatch, edgecolor="black", linewidth=0.4)
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.2f}" if v is not None and v < 10 else f"{v:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=6.5, rotation=90, xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"c={c}" for c in cs])
        ax.set_ylabel("overhead over direct Converse (ms, log)")
        ax.set_title(f"model latency {ttft} ms")
        ax.axhline(OVERHEAD_LIMIT_MS, color="gray", linestyle=":", linewidth=0.8, label=f"{OVERHEAD_LIMIT_MS:g} ms")
        ax.grid(axis="y", which="both", alpha=0.25)
        ax.set_ylim(floor * 0.8, None)
    axes[0][0].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"Gateway overhead, Quarry vs. LiteLLM {fig['versions']['litellm']} "
                    f"({fig['machine']['nproc']} cores, gateway on 1; values ≤ {floor} ms drawn at {floor})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


if __name__ == "__main__":
    main()
