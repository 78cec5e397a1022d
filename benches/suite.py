"""ubm against Spark and DuckDB on the same data, in one sitting. Run it with benches/run.sh.

    benches/run.sh [--scale 1] [--runs 5] [--skip spark,cluster]
    benches/run.sh --scaling [--runs 3] [--scales 1,2,4,8,16]
    benches/run.sh --cluster-scaling [--runs 3] [--scales 1,4,8]
    benches/run.sh --tls-cost [--runs 7] [--scale 1]
    benches/run.sh --fixed-cost [--runs 7] [--scale 0.01]
    benches/run.sh --from-postgres [--runs 7] [--scale 1]
    benches/run.sh --scale-out [--runs 3] [--scales 2,4] [--executors 1,2,4,8] [--cap 0.1]

For a scale factor it generates the data once (`ubm datagen`: review CSV with quoted line breaks,
purchases CSV and the same purchases in an embedded SQLite database), then runs the contenders in
turn, `--runs` times each, interleaved so that all see the same moments of a shared machine:
- ubm: `ubm run` in-process (reviews CSV + SQLite -> lake);
- ubm classify: `ubm classify` of the review CSV alone, in-process (timed from outside, start-up
  included): the classify goal compares it with the peers' classify phases, which have both cores
  to themselves as it does (inside `ubm run`, classify shares them with the extract);
- ubm-cluster: the same on `ubm cluster local --executors 2` (a scheduler and two executor
  processes on this machine);
- spark: benches/peers/spark_job.py, the original PySpark classifier and the metric join in
  Spark local[2];
- duckdb: benches/peers/duckdb_job.py, the same job in DuckDB.
It first checks that all of them produce the same classified reviews and the same metric table
(a speed without the same answer means nothing), then reports per phase the median, min and max
wall time, the peak RSS of the process (for Spark, the Python driver's plus the JVM's), the throughput (MB of review CSV per second) and the
ratio to ubm in-process; as a table on stdout and as JSON and Markdown in benches/results/.

Phases: classify = review CSV -> classified Parquet; metric = classified + purchases -> the metric
table (ubm reads the purchases it extracted from SQLite while classifying; the peers read the
purchases CSV inside this phase); end-to-end = the whole process, start-up included (ubm: ingest,
extract, classify, metric, run report). Phase times are measured inside each tool (ubm: its run
report), end-to-end from outside.

--scaling runs ubm in-process alone at SF 1, 2, 4, 8 and 16 (`--scales`) and reports time and peak memory
per SF, of `ubm run` and of `ubm classify` alone: memory must not grow with the review file.

--cluster-scaling runs ubm on `ubm cluster local` with 1, 2 and 3 executors at SF 1, 4 and 8
(`--scales`) and reports time, every process's peak RSS and the bytes the submitting process
received from the network (its socket reads, counted with `strace -f`, in one extra run per cell).

--tls-cost runs the same day on three local clusters of 2 executors, alternating run by run:
plaintext (tasks pushed to the executors, the default), plaintext with executors pulling their
tasks (`--pull`), and mutual TLS (`ubm cluster certs`, `--tls`, which pulls). It reports the
medians and the ratios: what TLS costs, and how much of it is the pull policy.

--fixed-cost runs a day of almost nothing (SF 0.01, purchases in Postgres) on a plaintext and a
mutual-TLS `ubm cluster local --executors 2`, alternating, and reports the medians against the
goals (under 1 s plaintext, under 1.5 s TLS): what a day costs on a cluster whatever its size.

--from-postgres times the purchase side on one machine, alternating: `ubm run` with its purchases
in Postgres against DuckDB's whole job from the CSV files, and ubm's extract alone (a run of an
empty review file) against `psql \\copy` of the same rows to /dev/null in binary, in one session
and in as many sessions side by side as ubm has slices: the peer that bounds the extract is the
database itself. It also reports each contender's CPU and the whole machine's meanwhile.

--scale-out simulates small nodes on this machine: a scheduler and N executors (N = 1, 2, 4, 8,
`--executors`), each executor in a cgroup of its own whose CPU is capped at `--cap` of a core
(cgroup v1 `cpu.cfs_quota_us`, or v2 `cpu.max`; root) with one task slot, so that N executors
have N x cap cores, as N small nodes would. The day grows on both sides (`--scales`, default 2
and 4: `ubm datagen --scale S` makes S x SF 1 reviews and S x SF 1 purchases, loaded into a
Postgres database of its own, `UBM_BENCH_POSTGRES`, default postgres://postgres@127.0.0.1:5432).
For each size and N it runs `ubm run --engine df://` (the client-mode driver) `--runs` times,
checks that every shape gives the same tables, and reports the median time, the speed-up and the
parallel efficiency over 1 executor, the marginal efficiency (the time growing the day adds, 1
executor vs N), the fixed cost (the time extrapolated to an empty day), each task's share of the
time, and the busiest process's CPU. What it cannot show: a network between nodes (all ports are
loopback), separate disks, or memory limits per node.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import timeline as scheduler_timeline

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
UBM = TARGET / "release" / "ubm"
RESULTS = ROOT / "benches" / "results"
DATE = "2011-12-31"
PHASES = ("classify", "metric", "classify+metric", "end-to-end")
GOALS = (  # (phase, peer, at least this many times the time of this ubm row)
    ("classify", "duckdb", 3.0, "ubm classify"),
    ("classify+metric", "duckdb", 2.0, "ubm"),
    ("end-to-end", "spark", 50.0, "ubm"),
)


def measured(command, env=None):
    """Runs `command`; returns (wall seconds, peak RSS in MB, stdout). Fails loudly on error."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen([str(c) for c in command], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed ({process.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stdout


def generate(scale, work):
    data = work / f"data-sf{scale}"
    if not (data / "oltp.sqlite").exists():
        print(f"generating SF {scale} under {data} …", file=sys.stderr)
        data.mkdir(parents=True, exist_ok=True)
        measured([UBM, "datagen", "--scale", scale, "--out", data, "--oltp", f"sqlite://{data}/oltp.sqlite"])
    return data


class Ubm:
    """`ubm run`, in-process or on a local cluster (`engine`, with the client material of `tls`)."""

    def __init__(self, name, data, work, engine="local", tls=None, oltp=None):
        self.name, self.data, self.work, self.engine, self.tls = name, data, work, engine, tls
        self.oltp = oltp or f"sqlite://{data}/oltp.sqlite"

    def run(self, i):
        lake = self.work / f"{self.name}-lake-{i}"
        shutil.rmtree(lake, ignore_errors=True)
        wall, rss, stdout = measured([
            UBM, "run", "--date", DATE, "--reviews", self.data / "movie_review.csv",
            "--oltp", self.oltp, "--lake", lake, "--engine", self.engine, "--json",
            # The HTML report is not part of the job the peers do; `benches/report.sh` times it.
            "--no-report", *(["--tls", self.tls / "client"] if self.tls else []),
        ])
        report = json.loads(stdout)[0]
        tasks = {t["name"]: t["duration_ms"] / 1000 for t in report["tasks"]}
        self.last_tasks = tasks
        outputs = {
            "classified": f"{lake}/stage/movie_review/insert_date={DATE}/*.parquet",
            "metric": f"{lake}/warehouse/user_behavior_metric/insert_date={DATE}/*.parquet",
        }
        return {"classify": tasks["classify"], "metric": tasks["metric"], "end-to-end": wall}, rss, outputs


class UbmClassify:
    """`ubm classify` alone, in-process, timed from outside (process start-up included): the
    classifier with both cores to itself, as the peers' classify phases have them. Inside `ubm
    run`, classify shares the cores with the extract, which runs beside it."""

    name = "ubm classify"

    def __init__(self, data, work):
        self.data, self.work = data, work

    def run(self, i):
        out = self.work / f"ubm-classify-out-{i}"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, _ = measured([UBM, "classify", "--input", self.data / "movie_review.csv", "--date", DATE, "--output", out])
        return {"classify": wall}, rss, {"classified": f"{out}/insert_date={DATE}/*.parquet"}


class Peer:
    """A peer script that prints {"classify_s", "metric_s"}."""

    def __init__(self, name, script, python, data, work):
        self.name, self.script, self.python, self.data, self.work = name, script, python, data, work

    def run(self, i):
        out = self.work / f"{self.name}-out-{i}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        wall, rss, stdout = measured([
            self.python, ROOT / "benches" / "peers" / self.script,
            self.data / "movie_review.csv", self.data / "user_purchase.csv", DATE, out,
        ])
        phases = json.loads(stdout.strip().splitlines()[-1])
        # Spark works in a JVM of its own: its memory counts with the driver's.
        rss += phases.get("jvm_peak_rss_mb") or 0
        # DuckDB writes one file per table, Spark a directory of part files.
        files = ".parquet" if self.name == "duckdb" else "/*.parquet"
        outputs = {"classified": f"{out}/classified{files}", "metric": f"{out}/metric{files}"}
        return {"classify": phases["classify_s"], "metric": phases["metric_s"], "end-to-end": wall}, rss, outputs


def free_ports(count):
    """A port P with P .. P+count-1 all free on loopback (the scheduler takes P, each executor
    the two after it)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    sys.exit(f"no {count} consecutive free ports on 127.0.0.1")


class LocalCluster:
    """`ubm cluster local --executors N` (2 by default) for the duration of the runs; with `tls`,
    a folder made by `ubm cluster certs`, the cluster runs with its node material."""

    def __init__(self, executors=2, tls=None, pull=False):
        self.EXECUTORS = executors
        self.tls = tls
        self.pull = pull

    def __enter__(self):
        self.port = free_ports(1 + 2 * self.EXECUTORS)
        self.log = tempfile.NamedTemporaryFile(prefix="ubm-bench-cluster-", suffix=".log", delete=False)
        tls = ["--tls", str(self.tls / "node")] if self.tls else []
        pull = ["--pull"] if self.pull else []
        self.process = subprocess.Popen(
            [UBM, "cluster", "local", "--executors", str(self.EXECUTORS), "--port", str(self.port), *tls, *pull],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while True:
            self.check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"the local cluster did not start within 60 s; its log: {self.log.name}")
                time.sleep(0.2)
        time.sleep(2)  # the executors register
        self.check_alive()
        return self

    def check_alive(self):
        if self.process.poll() is not None:
            sys.exit(f"`ubm cluster local` ended ({self.process.returncode}):\n{Path(self.log.name).read_text()[-2000:]}")

    def peak_rss_mb(self):
        """Peak RSS (VmHWM) of the scheduler and executor processes."""
        peaks = {}
        for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
            except FileNotFoundError:
                continue
            hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
            role = "scheduler" if " scheduler " in cmdline else f"executor {pid}"
            peaks[role] = round(hwm / 1024, 1)
        return peaks

    def __exit__(self, *_):
        os.killpg(self.process.pid, 15)
        self.process.wait()


def table_rows(sql):
    return duckdb.sql(sql).fetchall()


def check_same_answers(outputs):
    """Every contender's classified reviews (as a multiset) and metric table equal ubm's."""
    reference = outputs["ubm"]
    problems = []
    for name, out in outputs.items():
        if name == "ubm":
            continue
        for what, sql in (
            ("classified", "SELECT cid, positive_review, count(*) FROM read_parquet('{}') GROUP BY ALL"),
            ("metric", "SELECT customerid, CAST(amount_spent AS VARCHAR), review_score, review_count FROM read_parquet('{}')"),
        ):
            if what not in out:
                continue
            ours = sorted(map(str, table_rows(sql.format(reference[what]))))
            theirs = sorted(map(str, table_rows(sql.format(out[what]))))
            if ours != theirs:
                only_ours = len(set(ours) - set(theirs))
                only_theirs = len(set(theirs) - set(ours))
                problems.append(f"{name}: {what} differs from ubm's ({only_ours} rows only in ubm's, {only_theirs} only in {name}'s)")
    return problems


def summarize(samples, csv_mb):
    """samples: {contender: [(phases, rss), …]} -> {contender: {phase: stats}}"""
    summary = {}
    for name, runs in samples.items():
        summary[name] = {"peak_rss_mb": round(statistics.median(r for _, r in runs), 1)}
        for phase in PHASES:
            parts = phase.split("+")  # classify+metric is the sum of the two
            if not all(part in runs[0][0] for part in parts):
                continue  # `ubm classify` alone has no metric
            times = [sum(p[part] for part in parts) for p, _ in runs]
            median = statistics.median(times)
            summary[name][phase] = {
                "median_s": round(median, 4), "min_s": round(min(times), 4), "max_s": round(max(times), 4),
                "mb_per_s": round(csv_mb / median, 1) if median else None,
            }
    base = summary["ubm"]
    for name in summary:
        for phase in PHASES:
            if phase not in summary[name]:
                continue
            summary[name][phase]["x_ubm"] = round(summary[name][phase]["median_s"] / base[phase]["median_s"], 2)
    return summary


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), "0")
    # `-dirty` when the tree differs from the commit: the numbers are then of uncommitted code.
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "os": platform.platform(), "ubm_commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(scale, runs, csv_mb, summary, goals, cluster_rss, info):
    lines = [
        f"### SF {scale}: {csv_mb:.0f} MB of review CSV, median of {runs} interleaved runs",
        "",
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.",
        "",
        "| contender | phase | median s | min s | max s | MB/s | × ubm | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, phases in summary.items():
        for phase in PHASES:
            if phase not in phases:
                continue
            s = phases[phase]
            lines.append(f"| {name} | {phase} | {s['median_s']:.3f} | {s['min_s']:.3f} | {s['max_s']:.3f} | {s['mb_per_s']} | {s['x_ubm']} | {phases['peak_rss_mb']} |")
    if cluster_rss:
        lines += ["", "ubm-cluster peak RSS of the cluster's processes (MB): " + ", ".join(f"{k} {v}" for k, v in cluster_rss.items())]
    if goals:
        lines += ["", "| goal | measured | met |", "|---|---:|---|"]
        for g in goals:
            lines.append(f"| {g['phase']}: {g['peer']} ≥ {g['target']}× {g['base']} | {g['measured']}× | {'yes' if g['met'] else 'no'} |")
        lines += ["", "`ubm classify` is the command alone, timed from outside, start-up included; in `ubm run` the classify "
                  "task shares the two cores with the extract, which runs beside it (the `ubm` classify row)."]
    return "\n".join(lines) + "\n"


def compare(args):
    work = Path(args.work)
    data = generate(args.scale, work)
    csv_mb = (data / "movie_review.csv").stat().st_size / 1e6
    python = sys.executable
    contenders = [Ubm("ubm", data, work)]
    skip = set(filter(None, args.skip.split(",")))
    cluster = None
    if "cluster" not in skip:
        cluster = LocalCluster().__enter__()
        contenders.append(Ubm("ubm-cluster", data, work, engine=f"df://127.0.0.1:{cluster.port}"))
    if "spark" not in skip:
        contenders.append(Peer("spark", "spark_job.py", python, data, work))
    if "duckdb" not in skip:
        contenders.append(Peer("duckdb", "duckdb_job.py", python, data, work))
    # `ubm classify` alone, in the same interleaved rounds (its classified table is checked too).
    contenders.insert(1, UbmClassify(data, work))
    samples = {c.name: [] for c in contenders}
    outputs = {}
    cluster_rss = {}
    try:
        for i in range(args.runs):
            for contender in contenders:
                if cluster:
                    cluster.check_alive()
                phases, rss, out = contender.run(i)
                samples[contender.name].append((phases, rss))
                outputs.setdefault(contender.name, out)
                timed = "end-to-end" if "end-to-end" in phases else "classify"
                print(f"run {i + 1}/{args.runs} {contender.name:<12} {timed} {phases[timed]:.3f} s", file=sys.stderr)
            if i == 0:
                problems = check_same_answers(outputs)
                if problems:
                    sys.exit("not the same answers, so no speed is reported:\n" + "\n".join(problems))
                print("same classified reviews and metric table from every contender", file=sys.stderr)
        if cluster:
            cluster_rss = cluster.peak_rss_mb()
    finally:
        if cluster:
            cluster.__exit__()
    summary = summarize(samples, csv_mb)
    goals = []
    for phase, peer, target, base in GOALS:
        if peer in summary and base in summary:
            measured_ratio = round(summary[peer][phase]["median_s"] / summary[base][phase]["median_s"], 2)
            goals.append({"phase": phase, "peer": peer, "target": target, "base": base, "measured": measured_ratio, "met": measured_ratio >= target})
    info = machine()
    result = {"scale": args.scale, "runs": args.runs, "review_csv_mb": round(csv_mb, 1), "machine": info,
              "summary": summary, "goals": goals, "ubm_cluster_process_peak_rss_mb": cluster_rss}
    text = markdown(args.scale, args.runs, csv_mb, summary, goals, cluster_rss, info)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"sf{args.scale}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"sf{args.scale}.md").write_text(text)
    print(text)
    print(f"written: {RESULTS / f'sf{args.scale}.json'}, {RESULTS / f'sf{args.scale}.md'}")


def classify_alone(data, work):
    """`ubm classify` of the review file alone, in-process: (wall seconds, peak RSS MB)."""
    out = work / "classify-alone"
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, _ = measured([UBM, "classify", "--input", data / "movie_review.csv", "--date", DATE, "--output", out])
    shutil.rmtree(out, ignore_errors=True)
    return wall, rss


def scaling(args):
    work = Path(args.work)
    rows = []
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    for scale in scales:
        data = generate(scale, work)
        csv_mb = (data / "movie_review.csv").stat().st_size / 1e6
        ubm = Ubm("ubm", data, work)
        runs, alone = [], []
        for i in range(args.runs):  # interleaved: run, classify alone, run, ...
            runs.append(ubm.run(i)[:2])
            shutil.rmtree(work / f"ubm-lake-{i}", ignore_errors=True)
            alone.append(classify_alone(data, work))
        end = statistics.median(p["end-to-end"] for p, _ in runs)
        classify = statistics.median(p["classify"] for p, _ in runs)
        rss = statistics.median(r for _, r in runs)
        rows.append({"scale": float(scale) if "." in scale else int(scale), "review_csv_mb": round(csv_mb, 1),
                     "end_to_end_s": round(end, 3), "classify_s": round(classify, 3), "peak_rss_mb": round(rss, 1),
                     "classify_alone_s": round(statistics.median(w for w, _ in alone), 3),
                     "classify_alone_peak_rss_mb": round(statistics.median(r for _, r in alone), 1)})
        print(f"SF {scale}: end-to-end {end:.3f} s, classify {classify:.3f} s, peak RSS {rss:.0f} MB; "
              f"ubm classify alone peak RSS {rows[-1]['classify_alone_peak_rss_mb']:.0f} MB", file=sys.stderr)
    base = rows[0]
    for row in rows:
        ratio = row["scale"] / base["scale"]
        row["time_per_sf_vs_first"] = round((row["end_to_end_s"] / ratio) / base["end_to_end_s"], 2)
        row["peak_rss_vs_first"] = round(row["peak_rss_mb"] / base["peak_rss_mb"], 2)
        row["classify_alone_peak_rss_vs_first"] = round(row["classify_alone_peak_rss_mb"] / base["classify_alone_peak_rss_mb"], 2)
    last = rows[-1]
    linear = last["time_per_sf_vs_first"] <= 1.1
    # Memory must not grow with the file: the largest SF within 1.5x of the first's, under 1 GiB.
    bounded = all(last[k] <= 1.5 for k in ("peak_rss_vs_first", "classify_alone_peak_rss_vs_first")) \
        and all(last[k] < 1024 for k in ("peak_rss_mb", "classify_alone_peak_rss_mb"))
    info = machine()
    lines = [
        f"### Scaling of ubm in-process, median of {args.runs} runs per SF",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.", "",
        "| SF | review CSV MB | `ubm run` s | classify s | `ubm run` peak RSS MB | `ubm classify` alone peak RSS MB | time per SF ÷ first SF's | run RSS ÷ first SF's | classify RSS ÷ first SF's |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['scale']} | {r['review_csv_mb']} | {r['end_to_end_s']} | {r['classify_s']} | {r['peak_rss_mb']} | "
                     f"{r['classify_alone_peak_rss_mb']} | {r['time_per_sf_vs_first']} | {r['peak_rss_vs_first']} | {r['classify_alone_peak_rss_vs_first']} |")
    lines += ["", f"Time grows {'linearly or better' if linear else 'faster than linearly'} up to SF {last['scale']} "
              f"(time per SF is {last['time_per_sf_vs_first']}× SF {base['scale']}'s). Memory is "
              f"{'bounded' if bounded else 'NOT bounded'}: at SF {last['scale']} `ubm run` peaks at {last['peak_rss_mb']} MB "
              f"({last['peak_rss_vs_first']}× SF {base['scale']}'s) and `ubm classify` at {last['classify_alone_peak_rss_mb']} MB "
              f"({last['classify_alone_peak_rss_vs_first']}×); the goal is under 1 GiB and within 1.5×."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps({"runs": args.runs, "machine": info, "rows": rows, "linear": linear, "memory_bounded": bounded}, indent=2) + "\n")
    (RESULTS / "scaling.md").write_text(text)
    print(text)


def socket_bytes_received(command):
    """Runs `command` under `strace -f` and returns the bytes its socket reads returned: what the
    process received from the network (loopback included), whatever the protocol."""
    with tempfile.NamedTemporaryFile(prefix="ubm-strace-", suffix=".log") as trace:
        measured(["strace", "-f", "-qq", "-yy", "-e", "trace=read,readv,recvfrom,recvmsg", "-o", trace.name, *command])
        total = 0
        for line in Path(trace.name).read_text(errors="replace").splitlines():
            if "<TCP" not in line and "<UDP" not in line and "<UNIX" not in line:
                continue
            result = line.rsplit("=", 1)[-1].strip().split(" ", 1)[0]
            if result.isdigit():
                total += int(result)
        return total


def cluster_scaling(args):
    """ubm on `ubm cluster local` with 1, 2 and 3 executors at each scale: time, every process's
    peak RSS, and the bytes the submitting process received from the network."""
    if not shutil.which("strace"):
        sys.exit("--cluster-scaling counts the submitter's received bytes with strace: install it (apt-get install strace)")
    work = Path(args.work)
    rows = []
    for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
        data = generate(scale, work)
        csv_mb = (data / "movie_review.csv").stat().st_size / 1e6
        for executors in (1, 2, 3):
            with LocalCluster(executors) as cluster:
                engine = f"df://127.0.0.1:{cluster.port}"
                ubm = Ubm(f"ubm-{executors}x", data, work, engine=engine)
                runs = [ubm.run(i)[:2] for i in range(args.runs)]
                lake = work / "strace-lake"
                shutil.rmtree(lake, ignore_errors=True)
                received = socket_bytes_received([
                    UBM, "run", "--date", DATE, "--reviews", data / "movie_review.csv", "--oltp", f"sqlite://{data}/oltp.sqlite",
                    "--lake", lake, "--engine", engine, "--no-report"])
                shutil.rmtree(lake, ignore_errors=True)
                peaks = cluster.peak_rss_mb()
            for i in range(args.runs):
                shutil.rmtree(work / f"ubm-{executors}x-lake-{i}", ignore_errors=True)
            row = {"scale": scale, "review_csv_mb": round(csv_mb, 1), "executors": executors,
                   "end_to_end_s": round(statistics.median(p["end-to-end"] for p, _ in runs), 3),
                   "classify_s": round(statistics.median(p["classify"] for p, _ in runs), 3),
                   "submitter_peak_rss_mb": round(statistics.median(r for _, r in runs), 1),
                   "submitter_received_mb": round(received / 1e6, 2),
                   "scheduler_peak_rss_mb": peaks.get("scheduler"),
                   "executor_peak_rss_mb": sorted(v for k, v in peaks.items() if k.startswith("executor"))}
            rows.append(row)
            print(f"SF {scale} on {executors} executor(s): {row}", file=sys.stderr)
    info = machine()
    lines = [
        f"### ubm on `ubm cluster local`, median of {args.runs} runs per cell",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}. "
        "All processes share this machine's cores, so more executors add slots, not cores.", "",
        "| SF | review CSV MB | executors | `ubm run` s | classify s | submitter peak RSS MB | submitter received MB | scheduler peak RSS MB | executors' peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scale']} | {r['review_csv_mb']} | {r['executors']} | {r['end_to_end_s']} | {r['classify_s']} | "
                     f"{r['submitter_peak_rss_mb']} | {r['submitter_received_mb']} | {r['scheduler_peak_rss_mb']} | "
                     f"{', '.join(map(str, r['executor_peak_rss_mb']))} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster_scaling.json").write_text(json.dumps({"runs": args.runs, "machine": info, "rows": rows}, indent=2) + "\n")
    (RESULTS / "cluster_scaling.md").write_text(text)
    print(text)


def tls_cost(args):
    """The same day on a plaintext and a TLS local cluster, alternating, in one sitting."""
    work = Path(args.work)
    data = generate(args.scale, work)
    material = work / "tls-material"
    shutil.rmtree(material, ignore_errors=True)
    subprocess.run([UBM, "cluster", "certs", "--out", material], check=True, stdout=subprocess.DEVNULL)
    samples = {"plaintext": [], "plaintext-pull": [], "tls": []}
    with LocalCluster(2) as plain, LocalCluster(2, pull=True) as pulling, LocalCluster(2, tls=material) as secure:
        contenders = {
            "plaintext": Ubm("plaintext", data, work, engine=f"df://127.0.0.1:{plain.port}"),
            "plaintext-pull": Ubm("plaintext-pull", data, work, engine=f"df://127.0.0.1:{pulling.port}"),
            "tls": Ubm("tls", data, work, engine=f"df://127.0.0.1:{secure.port}", tls=material),
        }
        outputs = {}
        for i in range(args.runs):
            for name, ubm in contenders.items():
                phases, _, outputs[name] = ubm.run(i)
                samples[name].append(phases)
        problems = check_same_answers({"ubm": outputs["plaintext"], "pull": outputs["plaintext-pull"], "tls": outputs["tls"]})
        if problems:
            sys.exit("the clusters' answers differ: " + "; ".join(problems))
    medians = {name: {phase: statistics.median(p[phase] for p in runs) for phase in ("classify", "metric", "end-to-end")}
               for name, runs in samples.items()}
    ratio = medians["tls"]["end-to-end"] / medians["plaintext"]["end-to-end"]
    tls_alone = medians["tls"]["end-to-end"] / medians["plaintext-pull"]["end-to-end"]
    info = machine()
    lines = [
        f"### Mutual TLS on `ubm cluster local --executors 2`, SF {args.scale}, median of {args.runs} runs each, alternating",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.", "",
        "| cluster | `ubm run` s | classify s | metric s |", "|---|---:|---:|---:|",
    ]
    for name, m in medians.items():
        lines.append(f"| {name} | {m['end-to-end']:.3f} | {m['classify']:.3f} | {m['metric']:.3f} |")
    lines += ["", f"TLS / plaintext (push), end to end: {ratio:.3f} (target: at most 1.10)",
              f"TLS / plaintext with the same pull policy, end to end: {tls_alone:.3f} (what encryption and certificates cost)"]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"tls_cost_sf{args.scale}.json").write_text(json.dumps({"scale": args.scale, "runs": args.runs, "machine": info, "samples": samples,
                                                         "medians": medians, "tls_over_plaintext": ratio,
                                                         "tls_over_plaintext_pull": tls_alone}, indent=2) + "\n")
    (RESULTS / f"tls_cost_sf{args.scale}.md").write_text(text)
    print(text)
    shutil.rmtree(material, ignore_errors=True)


FIXED_COST_GOALS = {"plaintext": 1.0, "tls": 1.5}  # seconds, issue 23


def fixed_cost(args):
    """The fixed cost of a day on a cluster: SF 0.01 (a day of almost nothing) from Postgres on a
    plaintext and a mutual-TLS `ubm cluster local --executors 2`, alternating run by run. What is
    left is the cost of the day itself: start-up, the jobs' scheduling rounds, the commits."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, url = postgres_day(args.scale, work)
    material = work / "tls-material"
    shutil.rmtree(material, ignore_errors=True)
    subprocess.run([UBM, "cluster", "certs", "--out", material], check=True, stdout=subprocess.DEVNULL)
    walls = {name: [] for name in FIXED_COST_GOALS}
    tasks = {name: [] for name in FIXED_COST_GOALS}
    with LocalCluster(2) as plain, LocalCluster(2, tls=material) as secure:
        contenders = {
            "plaintext": Ubm("fixed-plaintext", data, work, engine=f"df://127.0.0.1:{plain.port}", oltp=url),
            "tls": Ubm("fixed-tls", data, work, engine=f"df://127.0.0.1:{secure.port}", tls=material, oltp=url),
        }
        outputs = {}
        for i in range(args.runs):
            # Each goes first every other round: neither always meets the moment after the other.
            order = list(contenders.items()) if i % 2 == 0 else list(reversed(contenders.items()))
            for name, ubm in order:
                phases, _, outputs[name] = ubm.run(i)
                walls[name].append(phases["end-to-end"])
                tasks[name].append(ubm.last_tasks)
        problems = check_same_answers({"ubm": outputs["plaintext"], "tls": outputs["tls"]})
        if problems:
            sys.exit("the clusters' answers differ: " + "; ".join(problems))
    info = machine()
    lines = [
        f"### Fixed cost of a day: SF {args.scale} from Postgres on `ubm cluster local --executors 2`, `ubm run --engine df://`, "
        f"median (min–max) of {args.runs} runs each, alternating",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.", "",
        "| cluster | `ubm run` s | goal s | ingest s | extract s | classify s | metric s |", "|---|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {}
    for name, goal in FIXED_COST_GOALS.items():
        medians[name] = statistics.median(walls[name])
        task = {t: statistics.median(run.get(t, 0) for run in tasks[name]) for t in ("ingest", "extract", "classify", "metric")}
        met = "met" if medians[name] < goal else "NOT met"
        lines.append(f"| {name} | {medians[name]:.3f} ({min(walls[name]):.3f}–{max(walls[name]):.3f}) | < {goal} ({met}) | "
                     + " | ".join(f"{task[t]:.3f}" for t in task) + " |")
    lines += ["", "Task times overlap: ingest, classify and the extract run side by side; the metric follows them."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fixed_cost.json").write_text(json.dumps({"scale": args.scale, "runs": args.runs, "machine": info, "walls": walls,
                                                        "tasks": tasks, "medians": medians, "goals": FIXED_COST_GOALS}, indent=2) + "\n")
    (RESULTS / "fixed_cost.md").write_text(text)
    print(text)
    shutil.rmtree(material, ignore_errors=True)


def machine_cpu_seconds():
    """CPU seconds the whole machine has spent so far, every process (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class ChildCpu:
    """The CPU seconds of the children waited for between two readings."""

    def __init__(self):
        self.before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def since(self):
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime) - (self.before.ru_utime + self.before.ru_stime)


# The rows ubm's extract reads, as its slices read them (cluster/src/exec/postgres.rs).
EXTRACT_SELECT = ("SELECT invoice_number::varchar, stock_code::varchar, detail::varchar, quantity::int4, invoice_date::timestamp, "
                  "unit_price::numeric, customer_id::int4, country::varchar FROM retail.user_purchase WHERE invoice_date < DATE '{before}'{where}")


def psql_copies(url, before, slices):
    """`psql \\copy (the extract's SELECT) to '/dev/null' (format binary)` in `slices` sessions side by side,
    each a range of the table's blocks as ubm cuts them: (wall s, psql's CPU s, the machine's CPU s)."""
    blocks = int(subprocess.run(["psql", url, "-Atc", "SELECT pg_relation_size('retail.user_purchase') / current_setting('block_size')::int"],
                                check=True, capture_output=True, text=True).stdout.strip())
    bounds = [blocks * i // slices for i in range(slices + 1)]
    commands = []
    for i in range(slices):
        where = "" if slices == 1 else f" AND ctid >= '({bounds[i]},0)'::tid" + (f" AND ctid < '({bounds[i + 1]},0)'::tid" if i + 1 < slices else "")
        sql = EXTRACT_SELECT.format(before=before, where=where)
        commands.append(["psql", url, "-qc", f"\\copy ({sql}) to '/dev/null' (format binary)"])
    cpu = ChildCpu()
    machine_before = machine_cpu_seconds()
    start = time.perf_counter()
    processes = [subprocess.Popen(c) for c in commands]
    if any(process.wait() != 0 for process in processes):
        sys.exit("psql \\copy failed")
    return time.perf_counter() - start, cpu.since(), machine_cpu_seconds() - machine_before


def from_postgres(args):
    """The purchase side on one machine: `ubm run` from Postgres against DuckDB's whole job from the
    CSV files, and ubm's extract alone against `psql \\copy` of the same rows (one session, and as
    many side by side as ubm has slices), alternating, in one sitting."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, url = postgres_day(args.scale, work)
    python = sys.executable
    duckdb_peer = Peer("duckdb", "duckdb_job.py", python, data, work)
    no_reviews = work / "header_only.csv"
    no_reviews.write_text("cid,review_str,id_review\n")
    before = (datetime.date.fromisoformat(DATE) + datetime.timedelta(days=1)).isoformat()
    slices = len(os.sched_getaffinity(0))  # in-process, ubm cuts one slice per core it may use
    samples = {name: [] for name in ("ubm run", "duckdb job", "ubm extract", "psql copy", f"psql copy x{slices}")}
    cpu = {name: [] for name in samples}
    outputs = {}
    for i in range(args.runs):
        lake = work / f"from-postgres-lake-{i}"
        shutil.rmtree(lake, ignore_errors=True)
        child = ChildCpu()
        wall, _, _ = measured([UBM, "run", "--date", DATE, "--reviews", data / "movie_review.csv", "--oltp", url, "--lake", lake,
                               "--json", "--no-report"])
        samples["ubm run"].append(wall)
        cpu["ubm run"].append((child.since(), None))
        outputs["ubm"] = {"classified": f"{lake}/stage/movie_review/insert_date={DATE}/*.parquet",
                          "metric": f"{lake}/warehouse/user_behavior_metric/insert_date={DATE}/*.parquet"}
        child = ChildCpu()
        phases, _, outputs["duckdb"] = duckdb_peer.run(i)
        samples["duckdb job"].append(phases["end-to-end"])
        cpu["duckdb job"].append((child.since(), None))
        alone = work / f"from-postgres-extract-{i}"
        shutil.rmtree(alone, ignore_errors=True)
        child = ChildCpu()
        machine_before = machine_cpu_seconds()
        measured([UBM, "run", "--date", DATE, "--reviews", no_reviews, "--oltp", url, "--lake", alone, "--no-report",
                  "--check", "metric_rows_zero=off"])
        machine_used = machine_cpu_seconds() - machine_before
        report = json.loads((alone / "_runs" / f"{DATE}.json").read_text())
        samples["ubm extract"].append(next(t for t in report["tasks"] if t["name"] == "extract")["duration_ms"] / 1000)
        cpu["ubm extract"].append((child.since(), machine_used))
        for name, count in (("psql copy", 1), (f"psql copy x{slices}", slices)):
            wall, own, machine_used = psql_copies(url, before, count)
            samples[name].append(wall)
            cpu[name].append((own, machine_used))
        if i + 1 < args.runs:  # the last run's tables are compared below
            shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(alone, ignore_errors=True)
    problems = check_same_answers(outputs)
    if problems:
        sys.exit("ubm's and DuckDB's tables differ: " + "; ".join(problems))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    run_ratio = medians["ubm run"] / medians["duckdb job"]
    extract_ratio = medians["ubm extract"] / medians["psql copy"]
    info = machine()
    rows = int(subprocess.run(["psql", url, "-Atc", f"SELECT count(*) FROM retail.user_purchase WHERE invoice_date < DATE '{before}'"],
                              check=True, capture_output=True, text=True).stdout.strip())
    lines = [
        f"### The purchase side: SF {args.scale} from Postgres ({rows:,} purchase rows), median (min–max) of {args.runs} runs each, alternating",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.", "",
        "| contender | s | CPU s of the process | CPU s of the machine meanwhile |", "|---|---:|---:|---:|",
    ]
    described = {
        "ubm run": "`ubm run` from Postgres, whole day (in-process)",
        "duckdb job": "DuckDB's whole job from the CSV files (`benches/peers/duckdb_job.py`)",
        "ubm extract": "ubm's extract alone (-> staged Parquet; its time from the run report, CPU of the whole run of an empty review file)",
        "psql copy": "`psql \\copy (the extract's SELECT) to '/dev/null' (format binary)`, one session",
        f"psql copy x{slices}": f"the same in {slices} sessions side by side, one per block range as ubm cuts its slices",
    }
    for name, times in samples.items():
        own = statistics.median(c[0] for c in cpu[name])
        machine_used = [c[1] for c in cpu[name] if c[1] is not None]
        meanwhile = f"{statistics.median(machine_used):.2f}" if machine_used else ""
        lines.append(f"| {described[name]} | {medians[name]:.3f} ({min(times):.3f}–{max(times):.3f}) | {own:.2f} | {meanwhile} |")
    lines += ["", f"`ubm run` / DuckDB's job: {run_ratio:.2f} (goal: at most 1.00)",
              f"ubm's extract / psql's one-session copy: {extract_ratio:.2f} (goal: at most 1.10)",
              f"ubm's extract / psql's {slices} sessions: {medians['ubm extract'] / medians[f'psql copy x{slices}']:.2f}",
              "", "The machine's CPU counts every process, Postgres's backends included: for psql it is mostly the server's work."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"from_postgres_sf{args.scale}.json").write_text(json.dumps({"scale": args.scale, "runs": args.runs, "rows": rows, "machine": info,
                                                                     "samples": samples, "cpu": cpu, "medians": medians,
                                                                     "run_over_duckdb": run_ratio, "extract_over_psql": extract_ratio}, indent=2) + "\n")
    (RESULTS / f"from_postgres_sf{args.scale}.md").write_text(text)
    print(text)


def backfill_parallel(args):
    """A backfill of --dates dates on `ubm cluster local --executors 2`, with --parallel 1 and 4
    alternating, each run on a fresh lake: how much running dates side by side saves when a
    day is mostly fixed latency (small jobs, commits) that leaves the executors idle."""
    work = Path(args.work)
    data = generate(args.scale, work)
    first = datetime.date.fromisoformat(DATE) - datetime.timedelta(days=args.dates - 1)
    dates = [(first + datetime.timedelta(days=i)).isoformat() for i in range(args.dates)]
    vendor = work / f"vendor-sf{args.scale}"
    for date in dates:
        (vendor / date).mkdir(parents=True, exist_ok=True)
        if not (vendor / date / "movie_review.csv").exists():
            shutil.copy(data / "movie_review.csv", vendor / date / "movie_review.csv")
    samples = {1: [], 4: []}
    with LocalCluster(2) as cluster:
        for i in range(args.runs):
            for parallel in samples:
                lake = work / f"backfill-p{parallel}-lake-{i}"
                shutil.rmtree(lake, ignore_errors=True)
                wall, _, _ = measured([
                    UBM, "submit", "--scheduler", f"df://127.0.0.1:{cluster.port}", "--from", dates[0], "--to", dates[-1],
                    "--parallel", parallel, "--reviews", f"{vendor}/{{date}}/movie_review.csv",
                    "--oltp", f"sqlite://{data}/oltp.sqlite", "--lake", lake, "--no-report",
                ])
                samples[parallel].append(wall)
                shutil.rmtree(lake, ignore_errors=True)
    medians = {p: statistics.median(w) for p, w in samples.items()}
    speedup = medians[1] / medians[4]
    info = machine()
    lines = [
        f"### A backfill of {args.dates} dates, SF {args.scale} a date, on `ubm cluster local --executors 2`, median of {args.runs} runs each, alternating",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}.", "",
        "| --parallel | backfill s | s a date |", "|---:|---:|---:|",
    ]
    for parallel, median in medians.items():
        lines.append(f"| {parallel} | {median:.2f} | {median / args.dates:.2f} |")
    lines += ["", f"--parallel 4 is {speedup:.2f}x as fast as --parallel 1 (target: at least 2)"]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backfill_parallel.json").write_text(json.dumps({"scale": args.scale, "dates": args.dates, "runs": args.runs, "machine": info,
                                                              "samples": samples, "medians": medians, "speedup": speedup}, indent=2) + "\n")
    (RESULTS / "backfill_parallel.md").write_text(text)
    print(text)


CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


def capped_cgroup(name, cores):
    """A cgroup whose processes together get at most `cores` of a CPU; its folder."""
    period = 100_000
    if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
        folder = CGROUP_V1 / name
        folder.mkdir(exist_ok=True)
        (folder / "cpu.cfs_period_us").write_text(str(period))
        (folder / "cpu.cfs_quota_us").write_text(str(int(cores * period)))
        return folder
    if (CGROUP_V2 / "cgroup.controllers").exists() and "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
        # The cpu controller must be on for the root's children for cpu.max to exist.
        (CGROUP_V2 / "cgroup.subtree_control").write_text("+cpu")
        folder = CGROUP_V2 / name
        folder.mkdir(exist_ok=True)
        (folder / "cpu.max").write_text(f"{int(cores * period)} {period}")
        return folder
    sys.exit("--scale-out caps each executor's CPU with a cgroup: this machine has no writable cgroup cpu controller "
             "(v1 /sys/fs/cgroup/cpu or v2 /sys/fs/cgroup with the cpu controller); run it as root")


def cpu_seconds(pid):
    """User + system CPU seconds process `pid` has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CappedCluster:
    """A plaintext scheduler and `executors` executors of one slot each, every executor in a
    cgroup capped at `cap` cores: `executors` small nodes on one machine."""

    def __init__(self, executors, cap, work):
        self.executors, self.cap, self.work = executors, cap, work

    def __enter__(self):
        self.scheduler, self.cgroups, self.processes = None, [], []
        try:
            return self.start()
        except BaseException:
            # A start that failed (sys.exit included) leaves no process or cgroup behind.
            self.__exit__()
            raise

    def start(self):
        self.port = free_ports(1 + 2 * self.executors)
        self.engine = f"df://127.0.0.1:{self.port}"
        self.log = open(self.work / f"scale-out-{self.executors}x.log", "w")
        state = self.work / "scheduler-runs"
        self.scheduler = subprocess.Popen(
            [UBM, "cluster", "scheduler", "--bind", f"127.0.0.1:{self.port}", "--state-dir", state],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.scheduler)
        for i in range(self.executors):
            cgroup = capped_cgroup(f"ubm-bench-{os.getpid()}-{i}", self.cap)
            self.cgroups.append(cgroup)
            flight = self.port + 1 + 2 * i
            # The shell joins the cgroup, then becomes the executor: every thread starts capped.
            self.processes.append(subprocess.Popen(
                ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" "$@"', UBM, "cluster", "executor",
                 "--scheduler", f"127.0.0.1:{self.port}", "--bind", f"127.0.0.1:{flight}", "--slots", "1"],
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 60
        while len(json.loads(subprocess.run([UBM, "status", "--scheduler", self.engine, "--executors", "--json"],
                                            capture_output=True, text=True).stdout or "[]")) < self.executors:
            if time.time() > deadline:
                sys.exit(f"{self.executors} executors did not register within 60 s; see {self.log.name}")
            time.sleep(0.2)
        return self

    def cpu(self):
        """CPU seconds so far: the scheduler's and each executor's."""
        used = {"scheduler": cpu_seconds(self.scheduler.pid)}
        for i, process in enumerate(self.processes):
            used[f"executor {i + 1}"] = cpu_seconds(process.pid)
        return used

    def __exit__(self, *_):
        for process in [p for p in [self.scheduler, *self.processes] if p is not None]:
            try:
                os.killpg(process.pid, 9)
            except ProcessLookupError:
                pass
            process.wait()
        for cgroup in self.cgroups:
            for _ in range(50):
                try:
                    cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        if getattr(self, "log", None):
            self.log.close()


def wait_for_port(port, process):
    deadline = time.time() + 60
    while True:
        if process.poll() is not None:
            sys.exit(f"the scheduler ended ({process.returncode}) before it listened on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                sys.exit(f"nothing listens on {port} after 60 s")
            time.sleep(0.1)


def postgres_day(scale, work):
    """SF `scale` sample data with its purchases in a Postgres database of its own; (data, URL)."""
    server = os.environ.get("UBM_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    name = f"ubm_bench_sf{scale}".replace(".", "_")
    data = work / f"pg-data-sf{scale}"
    url = f"{server}/{name}"
    done = data / ".loaded"  # written once the database holds the whole day
    if not done.exists():
        print(f"generating SF {scale} into {data} and Postgres database {name} …", file=sys.stderr)
        subprocess.run(["psql", f"{server}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)
        subprocess.run(["psql", f"{server}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
        data.mkdir(parents=True, exist_ok=True)
        measured([UBM, "datagen", "--scale", scale, "--out", data, "--oltp", url])
        done.write_text(url + "\n")
    return data, url


def scale_out(args):
    """ubm on 1..8 capped executors at two day sizes: speed-up, efficiencies, fixed cost, phases."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    if len(scales) != 2:
        sys.exit("--scale-out compares two day sizes: give --scales SMALL,LARGE (default 2,4)")
    counts = [int(n) for n in args.executors.split(",")]
    days = {scale: postgres_day(scale, work) for scale in scales}
    cells, outputs = {}, {}
    for n in counts:
        with CappedCluster(n, args.cap, work) as cluster:
            # One day first, not counted: the executors' first tasks pay for their processes'
            # first use (thread pools, connections, the page cache), which a cluster that runs a
            # day a day pays once, not every day.
            data, url = days[scales[0]]
            warm_up = work / f"scale-out-warm-up-{n}x"
            shutil.rmtree(warm_up, ignore_errors=True)
            measured([UBM, "run", "--date", DATE, "--reviews", data / "movie_review.csv", "--oltp", url, "--lake", warm_up,
                      "--engine", cluster.engine, "--no-report"])
            shutil.rmtree(warm_up, ignore_errors=True)
            for scale in scales:
                data, url = days[scale]
                times, tasks, cpu, machine_busy = [], [], [], []
                for i in range(args.runs):
                    lake = work / f"scale-out-sf{scale}-{n}x-{i}"
                    shutil.rmtree(lake, ignore_errors=True)
                    started_ms = int(time.time() * 1000)
                    before, machine_before = cluster.cpu(), machine_cpu_seconds()
                    wall, _, stdout = measured([UBM, "run", "--date", DATE, "--reviews", data / "movie_review.csv", "--oltp", url,
                                                "--lake", lake, "--engine", cluster.engine, "--json", "--no-report"])
                    after = cluster.cpu()
                    machine_busy.append((machine_cpu_seconds() - machine_before) / (wall * os.cpu_count()))
                    report = json.loads(stdout)[0]
                    times.append(wall)
                    tasks.append({t["name"]: t["duration_ms"] / 1000 for t in report["tasks"]})
                    cpu.append({k: after[k] - before[k] for k in after})
                    outputs[(scale, n)] = {
                        "classified": f"{lake}/stage/movie_review/insert_date={DATE}/*.parquet",
                        "metric": f"{lake}/warehouse/user_behavior_metric/insert_date={DATE}/*.parquet",
                    }
                    partitions = report.get("partitions") or {}
                if args.timeline:
                    # The last run's jobs, stage by stage, as the scheduler timed them; a scheduler
                    # that cannot say costs the timeline, never the benchmark's results.
                    try:
                        text = scheduler_timeline.render(scheduler_timeline.timeline(cluster.engine, started_ms))
                    except (OSError, ValueError, KeyError, TypeError) as e:
                        text = f"no timeline: the scheduler did not say, or said what timeline.py cannot read ({e!r})\n"
                    (work / f"scale-out-timeline-sf{scale}-{n}x.txt").write_text(text)
                    print(f"SF {scale} on {n} capped executor(s), the last run's jobs:\n{text}", file=sys.stderr)
                median = statistics.median(times)
                share = {name: round(statistics.median(t.get(name, 0) for t in tasks) / median, 2)
                         for name in ("ingest", "extract", "classify", "metric")}
                busiest = max(cpu[len(cpu) // 2].items(), key=lambda kv: kv[1])
                # How busy the capped executors were: their CPU over what their caps allowed. Below
                # 1 they waited, on work that was not theirs (the driver, the scheduler, Postgres)
                # or on the machine itself when it had no core left (machine_busy near 1).
                executor_cpu = statistics.median(sum(v for k, v in c.items() if k.startswith("executor")) for c in cpu)
                utilization = executor_cpu / (n * args.cap * median)
                cells[(scale, n)] = {"scale": scale, "executors": n, "time_s": round(median, 3), "shares": share,
                                     "executor_utilization": round(utilization, 2), "machine_busy": round(statistics.median(machine_busy), 2),
                                     "partitions": partitions.get("count"), "busiest": busiest[0],
                                     "busiest_cpu_s": round(busiest[1], 2)}
                print(f"SF {scale} on {n} capped executor(s): {cells[(scale, n)]}", file=sys.stderr)
    for scale in scales:
        reference = outputs[(scale, counts[0])]
        problems = check_same_answers({"ubm": reference, **{f"{n}x": outputs[(scale, n)] for n in counts[1:]}})
        if problems:
            sys.exit(f"SF {scale}: the shapes' tables differ: " + "; ".join(problems))
    small, large = scales
    one = counts[0]
    rows = []
    for n in counts:
        a, b = cells[(small, n)], cells[(large, n)]
        added_1 = cells[(large, one)]["time_s"] - cells[(small, one)]["time_s"]
        added_n = b["time_s"] - a["time_s"]
        grown = float(large) / float(small)
        fixed = (grown * a["time_s"] - b["time_s"]) / (grown - 1)  # the intercept of time over size
        rows.append({
            "executors": n, "small_s": a["time_s"], "large_s": b["time_s"],
            "speed_up_large": round(cells[(large, one)]["time_s"] / b["time_s"], 2),
            "parallel_efficiency_large": round(cells[(large, one)]["time_s"] / b["time_s"] * one / n, 2),
            "marginal_efficiency": round(added_1 / added_n * one / n, 2) if added_n > 0 else None,
            "added_s": round(added_n, 3), "fixed_cost_s": round(fixed, 3),
            "shares_large": b["shares"], "partitions": b["partitions"],
            "busiest_large": f"{b['busiest']} {b['busiest_cpu_s']} s",
            "executor_utilization_large": b["executor_utilization"], "machine_busy_large": b["machine_busy"],
        })
    info = machine()
    lines = [
        f"### Scale-out: ubm on N capped executors ({args.cap} of a core and one slot each), median of {args.runs} runs per cell",
        "", f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; ubm {info['ubm_commit']}, {info['date']}. "
        f"Each executor is a cgroup capped at {args.cap} core: N executors are N small nodes with N x {args.cap} cores; the "
        "scheduler, the driver (`ubm run --engine df://`) and Postgres are not capped. Loopback only: no network between nodes, one disk.", "",
        f"| executors | SF {small} s | SF {large} s | speed-up (SF {large}) | parallel efficiency (SF {large}) | time SF {small}→{large} adds | "
        f"marginal efficiency | fixed cost s | partitions | task shares of the SF {large} time | busiest process (SF {large}) | "
        f"executors' CPU / their caps (SF {large}) | machine CPU busy (SF {large}) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        shares = ", ".join(f"{k} {v}" for k, v in r["shares_large"].items())
        lines.append(f"| {r['executors']} | {r['small_s']} | {r['large_s']} | {r['speed_up_large']} | {r['parallel_efficiency_large']} | "
                     f"{r['added_s']} | {r['marginal_efficiency']} | {r['fixed_cost_s']} | {r['partitions']} | {shares} | {r['busiest_large']} | "
                     f"{r['executor_utilization_large']} | {r['machine_busy_large']} |")
    lines += ["", "Marginal efficiency: (time growing the day adds on 1 executor) / (N x the time it adds on N). Fixed cost: the "
              "time extrapolated linearly to an empty day. Task shares overlap (ingest and classify run beside the extract). "
              "Executors' CPU / their caps: the executors' CPU seconds over N x cap x the time (1 = every executor busy all along). "
              "Machine CPU busy: every process's CPU over the machine's cores x the time; near 1, the machine itself was full and "
              "the capped executors waited for a core, which N real nodes would not."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_out.json").write_text(json.dumps({"runs": args.runs, "cap": args.cap, "machine": info, "cells": list(cells.values()),
                                                       "rows": rows}, indent=2) + "\n")
    (RESULTS / "scale_out.md").write_text(text)
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default=None, help="scale factor (1 = 100,000 reviews; 0.1 for a quick run)")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs of each contender (default: 3 for --scaling, --cluster-scaling, --scale-out and "
                             "--backfill-parallel, 7 for --tls-cost, --fixed-cost and --from-postgres, else 5)")
    parser.add_argument("--skip", default="", help="comma-separated contenders to leave out: cluster, spark, duckdb")
    parser.add_argument("--scaling", action="store_true", help="ubm in-process at each of --scales instead")
    parser.add_argument("--cluster-scaling", action="store_true",
                        help="ubm on `ubm cluster local` with 1, 2 and 3 executors at each of --scales instead")
    parser.add_argument("--tls-cost", action="store_true",
                        help="ubm on a plaintext and a mutual-TLS local cluster, alternating, at --scale instead")
    parser.add_argument("--fixed-cost", action="store_true",
                        help="a day of SF 0.01 (or --scale) from Postgres on a plaintext and a TLS 2-executor local cluster, instead")
    parser.add_argument("--from-postgres", action="store_true",
                        help="`ubm run` from Postgres vs DuckDB's whole job, and the extract alone vs psql \\copy, at --scale, instead")
    parser.add_argument("--scale-out", action="store_true",
                        help="ubm on N executors each capped at --cap of a core (cgroups; root), at two day sizes, instead")
    parser.add_argument("--executors", default="1,2,4,8", help="--scale-out: the executor counts, 1 first")
    parser.add_argument("--timeline", action="store_true",
                        help="--scale-out: also print each cell's last run stage by stage, as the scheduler timed it (benches/timeline.py)")
    parser.add_argument("--cap", type=float, default=0.1, help="--scale-out: each executor's share of a core (0.1: 8 executors leave a 2-core machine room for Postgres and the driver)")
    parser.add_argument("--scales", default=None,
                        help="the scale factors, smallest first (--scaling: 1,2,4,8,16; --cluster-scaling: 1,4,8; --scale-out: 2,4)")
    parser.add_argument("--backfill-parallel", action="store_true",
                        help="a backfill of --dates dates on a 2-executor local cluster, --parallel 1 vs 4, instead")
    parser.add_argument("--dates", type=int, default=8, help="--backfill-parallel: the dates of the backfill")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ubm-bench"), help="data and outputs")
    args = parser.parse_args()
    if not UBM.exists():
        sys.exit(f"{UBM} is missing: run benches/run.sh, which builds it")
    if args.runs is None:
        few = args.scaling or args.cluster_scaling or args.scale_out or args.backfill_parallel
        args.runs = 3 if few else 7 if (args.tls_cost or args.fixed_cost or args.from_postgres) else 5
    if args.runs < 1:
        sys.exit("--runs must be at least 1")
    if args.scale is None:
        args.scale = "0.01" if args.fixed_cost else "1"
    if args.scales is None:
        args.scales = "1,4,8" if args.cluster_scaling else "2,4" if args.scale_out else "1,2,4,8,16"
    if args.backfill_parallel:
        backfill_parallel(args)
    elif args.scale_out:
        scale_out(args)
    elif args.from_postgres:
        from_postgres(args)
    elif args.fixed_cost:
        fixed_cost(args)
    elif args.tls_cost:
        tls_cost(args)
    elif args.cluster_scaling:
        cluster_scaling(args)
    elif args.scaling:
        scaling(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
