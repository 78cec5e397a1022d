#!/usr/bin/env python3
"""Where a day's time went on a cluster: every job the scheduler knows, stage by stage, on one
clock, as `ubm status --scheduler df://… --json` reports them (the scheduler's own timings; a TLS
cluster's environment works as it does for `ubm status`).

    benches/timeline.py --scheduler df://127.0.0.1:50050 [--since EPOCH_MS] [--json]

For each stage: its tasks, when the first was launched and the last finished (seconds after the
earliest job's start), and the tasks' execution times (median and max). A gap between one
stage's last task and the next stage's first is scheduling; a stage whose tasks run one after
another, or one task much longer than the median, is where the day waits. `benches/suite.py
--scale-out --timeline` prints this for the last run of every cell.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

UBM = Path(os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parent.parent / "target")) / "release" / "ubm"


def status(scheduler, *job):
    """`ubm status [JOB] --scheduler SCHEDULER --json`, parsed; `None` for a job the scheduler
    has forgotten. A failed job is shown too (ubm prints it and exits 1); any other refusal (a
    scheduler lost mid-read) is an error, not a job without stages."""
    if not UBM.exists():
        raise OSError(f"{UBM} is not built: `cargo build --release`, with CARGO_TARGET_DIR as the build used")
    done = subprocess.run([UBM, "status", *job, "--scheduler", scheduler, "--json"], capture_output=True, text=True)
    if done.returncode != 0 and not done.stdout.strip():
        if job and "no job `" in done.stderr:
            return None
        raise OSError(f"ubm status --scheduler {scheduler}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def stages_of(scheduler, job_id):
    """The job's stages as dicts: id, tasks, launched/finished (epoch ms), exec median/max (ms)."""
    shown = status(scheduler, job_id)
    rows = []
    for stage in ((shown or {}).get("stages") or {}).get("stages", []):
        # Tasks still running have no execution time yet: only finished ones are timed.
        tasks = [t for t in stage.get("tasks", []) if t and t.get("finish_time")]
        if not tasks:
            rows.append({"stage": stage["stage_id"], "tasks": 0, "status": stage["stage_status"]})
            continue
        execs = [t["exec_duration"] for t in tasks]
        rows.append({
            "stage": stage["stage_id"], "tasks": len(tasks), "status": stage["stage_status"],
            "launched_ms": min(t["launch_time"] for t in tasks), "finished_ms": max(t["finish_time"] for t in tasks),
            "exec_median_ms": statistics.median(execs), "exec_max_ms": max(execs),
        })
    # In the order they ran (the scheduler numbers stages by plan, not by time).
    return sorted(rows, key=lambda r: r.get("launched_ms", float("inf")))


def timeline(scheduler, since_ms=0):
    """Every job started at or after `since_ms`, oldest first, with its stages (a job not yet
    started has no start time and is left out)."""
    jobs = [j for j in status(scheduler) if j.get("start_time") and j["start_time"] >= since_ms]
    jobs.sort(key=lambda j: j["start_time"])
    return [{"job": j["job_name"] or j["job_id"], "id": j["job_id"], "start_ms": j["start_time"], "end_ms": j["end_time"],
             "stages": stages_of(scheduler, j["job_id"])} for j in jobs]


def render(jobs):
    if not jobs:
        return "no jobs\n"
    origin = jobs[0]["start_ms"]
    at = lambda ms: f"{(ms - origin) / 1000:7.2f}" if ms else "      -"
    lines = [f"{'job / stage':<34} {'tasks':>5} {'from s':>7} {'to s':>7} {'exec med ms':>11} {'exec max ms':>11}"]
    for job in jobs:
        lines.append(f"{job['job'][:34]:<34} {'':>5} {at(job['start_ms'])} {at(job['end_ms'])}")
        for s in job["stages"]:
            if not s["tasks"]:
                lines.append(f"  stage {s['stage']:<26} {0:>5} ({s['status']})")
                continue
            lines.append(f"  stage {s['stage']:<26} {s['tasks']:>5} {at(s['launched_ms'])} {at(s['finished_ms'])} "
                         f"{s['exec_median_ms']:>11.0f} {s['exec_max_ms']:>11.0f}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheduler", required=True, help="the scheduler's address, df://HOST:PORT, as `ubm status` takes it")
    parser.add_argument("--since", type=int, default=0, help="only jobs started at or after this epoch millisecond")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    args = parser.parse_args()
    try:
        jobs = timeline(args.scheduler, args.since)
    except (OSError, ValueError) as e:
        sys.exit(f"cannot read the jobs of {args.scheduler}: {e}")
    print(json.dumps(jobs, indent=2) if args.json else render(jobs), end="")


if __name__ == "__main__":
    main()
