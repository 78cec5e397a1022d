"""Two or more builds of ubm against each other, interleaved: how a change moved `ubm classify` and
`ubm run` on this machine, at this moment. The suite (benches/run.sh) compares ubm with its peers;
this compares ubm with itself, which is how every speed change in docs/performance.md was measured.

    cargo build --release && cp target/release/ubm /tmp/ubm-after
    git stash && cargo build --release && cp target/release/ubm /tmp/ubm-before && git stash pop
    python3 benches/ab.py --scale 1 --runs 11 /tmp/ubm-before /tmp/ubm-after

Each round runs every build once, in turn, on the same data (`ubm datagen` output under --work,
made once by the first build): `ubm classify` of the review file, then `ubm run` with the embedded
SQLite OLTP. It prints per build and command the median wall time, the median CPU time (user +
system, all threads: steadier than wall time on a shared machine) and the median peak RSS, and
checks that every build classified the same number of positive reviews.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATE = "2011-12-31"


def measured(command):
    """Runs `command`: (wall s, CPU s, peak RSS MB, stdout). Stops the comparison on a failure."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen([str(c) for c in command], stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(map(str, command))} failed:\n{err.read().decode()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read().decode()


def commands(build, data, out):
    classify = [build, "classify", "--input", data / "movie_review.csv", "--date", DATE, "--output", out / "classified"]
    run = [build, "run", "--date", DATE, "--reviews", data / "movie_review.csv", "--oltp",
           f"sqlite://{data}/oltp.sqlite", "--lake", out / "lake", "--no-report"]
    return {"classify": classify, "run": run}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", type=Path, help="ubm binaries to compare")
    parser.add_argument("--scale", default="1")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ubm-bench")
    args = parser.parse_args()
    data = args.work / f"data-sf{args.scale}"
    if not (data / "oltp.sqlite").exists():
        data.mkdir(parents=True, exist_ok=True)
        measured([args.builds[0], "datagen", "--scale", args.scale, "--out", data, "--oltp", f"sqlite://{data}/oltp.sqlite"])
    samples = {(b, c): [] for b in args.builds for c in ("classify", "run")}
    answers = {}
    for i in range(args.runs):
        for build in args.builds:
            out = args.work / f"ab-{build.name}"
            for name, command in commands(build, data, out).items():
                shutil.rmtree(out, ignore_errors=True)
                wall, cpu, rss, stdout = measured(command)
                samples[(build, name)].append((wall, cpu, rss))
                if name == "classify":
                    answers.setdefault(build, stdout.split(" positive")[0])
        print(f"round {i + 1}/{args.runs}", file=sys.stderr)
    if len(set(answers.values())) != 1:
        sys.exit(f"the builds classified differently: {answers}")
    print(f"SF {args.scale}, medians of {args.runs} interleaved rounds")
    print(f"{'build':<28} {'command':<9} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for (build, name), runs in samples.items():
        wall, cpu, rss = (statistics.median(r[k] for r in runs) for k in range(3))
        print(f"{str(build):<28} {name:<9} {wall:8.3f} {cpu:8.3f} {rss:12.1f}")


if __name__ == "__main__":
    main()
