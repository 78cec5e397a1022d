"""Plays EMR's part for ubm's deploy tests, on this machine.

moto, running in this process, answers the EMR and S3 APIs (`ubm deploy` talks to it through
AWS_ENDPOINT_URL). moto accepts steps but never runs them; this harness does, as EMR's
command-runner.jar would on the master node: one step at a time, in order, the step's command
run here (the node's `/usr/local/bin/ubm-step` played by the `ubm` binary given with --ubm, with
the variables of the environment file the cluster's bootstrap action names, read from moto's
S3, and with the node's TLS material from the folder its fourth argument names, as
UBM_TLS_DIR). A step then becomes COMPLETED or FAILED by its exit code, FAILED with failure details
(reason, message, log file) as EMR reports them, and ActionOnFailure=CANCEL_AND_WAIT cancels
the steps after a failed one.

Like EMR, it refuses an AddJobFlowSteps call that would leave more than 256 steps PENDING,
RUNNING or CANCEL_PENDING on a cluster (moto does not), and it writes the most steps ever active
at once to `max_active_steps` in the log folder. Each RunJobFlow request is kept as sent in
`run_job_flow/N.json` there (moto drops what it does not model, auto-termination among it).

The node's environment file reaches the step as on a node: saved to a file named by
UBM_ENV_FILE, which ubm reads itself.

While the file given with --pause-file exists, no new step is started (a slow cluster, for
testing timeouts).

Usage: python emr_harness.py --port P --ubm PATH --log-dir DIR [--pause-file F]
Prints `ready` on stdout once the server listens.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from moto.core import DEFAULT_ACCOUNT_ID
from moto.emr import models as emr_models
from moto.emr.exceptions import ValidationException
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

STEP_COMMAND = "/usr/local/bin/ubm-step"
ACTIVE_STEP_LIMIT = 256
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCEL_PENDING")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ubm", required=True, help="the program that plays ubm-step (the ubm binary)")
    parser.add_argument("--log-dir", required=True, help="where step logs go")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--pause-file", help="no step starts while this file exists")
    args = parser.parse_args()

    report_failure_details()
    limit_active_steps(os.path.join(args.log_dir, "max_active_steps"))
    keep_cluster_requests(os.path.join(args.log_dir, "run_job_flow"))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    print("ready", flush=True)
    handled = set()
    while True:
        ran = False
        if not (args.pause_file and os.path.exists(args.pause_file)):
            backend = emr_models.emr_backends[DEFAULT_ACCOUNT_ID][args.region]
            for cluster in list(backend.clusters.values()):
                ran = run_pending_steps(cluster, handled, args) or ran
        if not ran:
            time.sleep(0.1)


def keep_cluster_requests(folder):
    """moto drops parts of RunJobFlow it does not model (AutoTerminationPolicy,
    UnhealthyNodeReplacement): keep each request's JSON as sent, numbered, for the tests."""
    from moto.emr.responses import ElasticMapReduceResponse

    plain = ElasticMapReduceResponse.run_job_flow
    os.makedirs(folder, exist_ok=True)

    def run_job_flow(response):
        body = response.body.decode("utf-8") if isinstance(response.body, bytes) else str(response.body)
        with open(os.path.join(folder, f"{len(os.listdir(folder)) + 1}.json"), "w") as out:
            out.write(body)
        return plain(response)

    ElasticMapReduceResponse.run_job_flow = run_job_flow


def limit_active_steps(record_path):
    """EMR's limit of active steps per cluster, which moto does not enforce: a call that would
    exceed it is refused with EMR's error, and the most steps ever active is recorded."""
    plain = emr_models.ElasticMapReduceBackend.add_job_flow_steps
    most = [0]

    def add_job_flow_steps(backend, job_flow_id, steps):
        cluster = backend.clusters[job_flow_id]
        active = sum(1 for step in cluster.steps if step.state in ACTIVE_STATES)
        if active + len(steps) > ACTIVE_STEP_LIMIT:
            raise ValidationException(
                "Maximum number of active steps(State = 'Running', 'Pending' or 'Cancel_Pending') for cluster exceeded."
            )
        added = plain(backend, job_flow_id, steps)
        most[0] = max(most[0], active + len(steps))
        with open(record_path, "w") as out:
            out.write(str(most[0]))
        return added

    emr_models.ElasticMapReduceBackend.add_job_flow_steps = add_job_flow_steps


def report_failure_details():
    """moto's step status has no FailureDetails; EMR's has. Add them when a step has some."""
    plain = emr_models.Step.status.fget

    def status(step):
        answer = plain(step)
        details = getattr(step, "failure_details", None)
        if details:
            answer["FailureDetails"] = details
        return answer

    emr_models.Step.status = property(status)


def run_pending_steps(cluster, handled, args):
    for step in list(cluster.steps):
        if step.id in handled or step.state not in ("PENDING", "RUNNING"):
            continue
        handled.add(step.id)
        run_step(cluster, step, args)
        if step.state == "FAILED" and step.action_on_failure == "CANCEL_AND_WAIT":
            for later in cluster.steps:
                if later.state == "PENDING":
                    later.state = "CANCELLED"
                    handled.add(later.id)
        return True  # one step at a time, as EMR runs them
    return False


def run_step(cluster, step, args):
    step.state = "RUNNING"
    step.start_date_time = datetime.now(timezone.utc)
    log_dir = os.path.join(args.log_dir, cluster.id, "steps", step.id)
    os.makedirs(log_dir, exist_ok=True)
    stderr_path = os.path.join(log_dir, "stderr")
    command = list(step.args)
    if step.jar != "command-runner.jar" or not command:
        finish(step, 1, "only command-runner.jar steps are supported here", stderr_path)
        return
    # The node's ubm-step, wherever it stands (a step runs it under `timeout`).
    command = [args.ubm if word == STEP_COMMAND else word for word in command]
    env = dict(os.environ)
    env_file = node_env_file(cluster, args)
    if env_file:
        env["UBM_ENV_FILE"] = env_file
    tls_dir = node_tls_material(cluster, args)
    if tls_dir:
        env["UBM_TLS_DIR"] = tls_dir
    with open(os.path.join(log_dir, "stdout"), "wb") as out, open(stderr_path, "wb") as err:
        code = subprocess.call(command, stdout=out, stderr=err, env=env)
    with open(stderr_path, "rb") as err:
        lines = [line.strip() for line in err.read().decode("utf-8", "replace").splitlines() if line.strip()]
    # EMR puts the likely cause it finds in the logs in Message; here, the last error line.
    message = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
    finish(step, code, message, stderr_path)


def finish(step, code, message, log_file):
    step.end_date_time = datetime.now(timezone.utc)
    if code == 0:
        step.state = "COMPLETED"
        return
    step.state = "FAILED"
    step.failure_details = {
        "Reason": f"The step's command exited with code {code}.",
        "Message": message,
        "LogFile": log_file,
    }


def node_tls_material(cluster, args):
    """The master node's TLS material, as the bootstrap action installs it (its fourth argument
    names the folder in S3), so that a step presents the node's certificate as on EMR."""
    for action in cluster.bootstrap_actions:
        arguments = action.args
        if len(arguments) >= 4 and arguments[3].startswith("s3://"):
            bucket, prefix = arguments[3][len("s3://"):].split("/", 1)
            folder = os.path.join(args.log_dir, cluster.id, "tls")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            for name in ("ca.pem", "cert.pem", "key.pem"):
                found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, prefix.rstrip("/") + "/" + name)
                if found is None:
                    print(f"harness: {arguments[3]}{name} is missing", file=sys.stderr)
                    return None
                path = os.path.join(folder, name)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "wb") as out:
                    out.write(found.value)
            return folder
    return None


def node_env_file(cluster, args):
    """The environment file the bootstrap action installs on the nodes (its second argument
    names it in S3), saved where a step's ubm reads it, as on a node."""
    for action in cluster.bootstrap_actions:
        arguments = action.args
        if len(arguments) >= 2 and arguments[1].startswith("s3://"):
            bucket, key = arguments[1][len("s3://"):].split("/", 1)
            found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key)
            if found is None:
                print(f"harness: {arguments[1]} is missing", file=sys.stderr)
                return None
            folder = os.path.join(args.log_dir, cluster.id)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            path = os.path.join(folder, "env")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(found.value)
            return path
    return None


if __name__ == "__main__":
    main()
