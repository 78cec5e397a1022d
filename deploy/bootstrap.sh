#!/bin/bash
# ubm's EMR bootstrap action. EMR runs it on every node before the node joins the cluster:
#
#   bootstrap.sh BINARY_URL [ENV_FILE_URL|-] [SCHEDULER_PORT] [TLS_URL|-]
#
# It installs ubm, and ubm-step (ubm with the variables of /etc/ubm/env, which EMR steps run),
# checks that the binary runs on this node, then starts `ubm cluster scheduler` on the master
# node, or `ubm cluster executor` pointed at the master's private DNS name on every other node,
# as a service that restarts on failure, and waits (UBM_BOOTSTRAP_WAIT_SECONDS: default 30 s for
# the scheduler, 300 s for an executor, which listens only once it has joined the scheduler)
# until the service listens on its port. If the binary does not run or the service does not listen,
# it exits non-zero with the reason and the service's last log lines: EMR then fails the cluster
# (TERMINATED_WITH_ERRORS, the reason in this action's stderr in the cluster's log bucket)
# instead of reporting WAITING with nodes that restart forever.
#
# The environment file (/etc/ubm/env: UBM_OLTP, UBM_WAREHOUSE, ...) is read by ubm itself,
# named by UBM_ENV_FILE, in services and steps alike: one KEY=VALUE per line, the value every
# byte after `=`, nothing expanded. Neither the shell nor systemd's EnvironmentFile= reads it,
# since the two would give a password holding $, ;, `, quotes or spaces two different values.
#
# The services run as the user EMR runs steps as (hadoop), which owns what they need: the
# environment file, the TLS material, the work and log folders.
# TLS_URL is a folder holding the cluster's node material (ca.pem, cert.pem, key.pem): it goes
# to /etc/ubm/tls (the key mode 0600) and every process runs with --tls, steps included. With
# `-`, the processes listen in plaintext on the private network (--insecure).
# Which node it is on, and the master's name, come from EMR's own files:
# /mnt/var/lib/info/instance.json (isMaster) and job-flow.json (masterPrivateDnsName).
#
# For a machine that is not an EMR node (ubm's tests), these variables override the defaults:
# UBM_EMR_INFO_DIR, UBM_INSTALL_DIR, UBM_ETC_DIR, UBM_WORK_DIR, UBM_LOG_DIR, UBM_EXTERNAL_HOST,
# UBM_EXECUTOR_PORT, UBM_SERVICE_MANAGER (systemd | loop; default: systemd when it runs),
# UBM_SERVICE_USER (default: hadoop when it exists, else the user running this script),
# UBM_BOOTSTRAP_WAIT_SECONDS, UBM_BUSY_FILE (default /emr/metricscollector/isbusy).
set -euo pipefail

binary_url="${1:?usage: bootstrap.sh BINARY_URL [ENV_FILE_URL|-] [SCHEDULER_PORT] [TLS_URL|-]}"
env_url="${2:--}"
scheduler_port="${3:-50050}"
tls_url="${4:--}"
info_dir="${UBM_EMR_INFO_DIR:-/mnt/var/lib/info}"
install_dir="${UBM_INSTALL_DIR:-/usr/local/bin}"
etc_dir="${UBM_ETC_DIR:-/etc/ubm}"
work_dir="${UBM_WORK_DIR:-/mnt/ubm}"
log_dir="${UBM_LOG_DIR:-/var/log/ubm}"
executor_port="${UBM_EXECUTOR_PORT:-50051}"
wait_seconds="${UBM_BOOTSTRAP_WAIT_SECONDS:-}"
service_user="${UBM_SERVICE_USER:-}"
if [ -z "$service_user" ]; then
  if id hadoop >/dev/null 2>&1; then service_user=hadoop; else service_user=$(id -un); fi
fi

# EMR runs bootstrap actions as the hadoop user, with password-less sudo.
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

fetch() { # fetch URL DEST: s3:// through the AWS CLI of the node, anything else as a path
  case "$1" in
    s3://*) aws s3 cp --only-show-errors "$1" "$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

json_field() { # json_field FILE FIELD: prints the field (booleans as true/false), empty if absent
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else (str(v).lower() if isinstance(v, bool) else v))' "$1" "$2"
}

for file in instance.json job-flow.json; do
  if [ ! -r "$info_dir/$file" ]; then
    echo "bootstrap: $info_dir/$file is missing: this is not an EMR node (set UBM_EMR_INFO_DIR to test elsewhere)" >&2
    exit 1
  fi
done
is_master=$(json_field "$info_dir/instance.json" isMaster)
master=$(json_field "$info_dir/job-flow.json" masterPrivateDnsName)
external_host="${UBM_EXTERNAL_HOST:-$(hostname -f)}"

$sudo mkdir -p "$install_dir" "$etc_dir" "$work_dir" "$log_dir"
$sudo chown "$service_user" "$work_dir" "$log_dir"
tmp=$(mktemp)
# It holds the environment file and the node key for a moment: never left behind.
trap 'rm -f "$tmp"' EXIT
fetch "$binary_url" "$tmp"
$sudo install -m 0755 "$tmp" "$install_dir/ubm"
# A binary built for another system or CPU fails here, with the shell's reason, not later in
# a service that restarts forever.
if ! version=$("$install_dir/ubm" --version 2>&1); then
  echo "bootstrap: $install_dir/ubm (from $binary_url) does not run on this node ($(uname -sm)): $version" >&2
  exit 1
fi
echo "bootstrap: installed $version"
env_line=""
if [ "$env_url" != "-" ]; then
  fetch "$env_url" "$tmp"
  # Steps and services run as the service user: it alone may read the secrets.
  $sudo install -m 0600 -o "$service_user" "$tmp" "$etc_dir/env"
  # ubm reads it as the services will: a line it cannot read fails the node now.
  if ! problem=$($sudo env "UBM_ENV_FILE=$etc_dir/env" "$install_dir/ubm" --version 2>&1 >/dev/null); then
    echo "bootstrap: $problem" >&2
    exit 1
  fi
  env_line="UBM_ENV_FILE=$etc_dir/env"
fi
exposure="--insecure"
if [ "$tls_url" != "-" ]; then
  # The node's key pair and the cluster's CA. Steps (run as hadoop) present the same
  # certificate to the scheduler, so hadoop owns the files; nothing here prints them.
  $sudo mkdir -p "$etc_dir/tls"
  $sudo chmod 0700 "$etc_dir/tls"
  for file in ca.pem cert.pem key.pem; do
    fetch "${tls_url%/}/$file" "$tmp"
    $sudo install -m 0600 "$tmp" "$etc_dir/tls/$file"
  done
  $sudo chown -R "$service_user" "$etc_dir/tls"
  exposure="--tls $etc_dir/tls"
fi
cat >"$tmp" <<EOF
#!/bin/sh
# ubm with the variables of $etc_dir/env (UBM_OLTP, UBM_WAREHOUSE, AWS_REGION, ...), which
# stay out of EMR step arguments (the console shows those to anyone who can see the cluster),
# and the node's TLS material when the cluster has some. ubm reads the file itself.
if [ -e "$etc_dir/env" ]; then UBM_ENV_FILE="$etc_dir/env"; export UBM_ENV_FILE; fi
if [ -d "$etc_dir/tls" ]; then UBM_TLS_DIR="$etc_dir/tls"; export UBM_TLS_DIR; fi
exec "$install_dir/ubm" "\$@"
EOF
$sudo install -m 0755 "$tmp" "$install_dir/ubm-step"
rm -f "$tmp"

if [ "$is_master" = "true" ]; then
  name=ubm-scheduler
  port=$scheduler_port
  wait_seconds="${wait_seconds:-30}"
  # Cluster-mode runs keep their state under the work dir: a scheduler restarted by the
  # service manager resumes them.
  command="$install_dir/ubm cluster scheduler --bind 0.0.0.0:$scheduler_port --external-host $external_host --state-dir $work_dir/runs $exposure"
  # EMR's marker for work outside YARN and steps (6.4.0 and later): the scheduler touches it
  # while jobs run, so that auto-termination does not end a cluster a laptop is driving.
  # Made here if EMR's metrics collector has not made it yet (bootstrap actions run early).
  busy_file="${UBM_BUSY_FILE:-/emr/metricscollector/isbusy}"
  $sudo mkdir -p "$(dirname "$busy_file")"
  $sudo touch "$busy_file"
  $sudo chown "$service_user" "$busy_file"
  command="$command --busy-file $busy_file"
else
  if [ -z "$master" ]; then
    echo "bootstrap: no masterPrivateDnsName in $info_dir/job-flow.json" >&2
    exit 1
  fi
  name=ubm-executor
  port=$executor_port
  # An executor listens once it has joined the scheduler, and EMR bootstraps the master node
  # beside the core nodes, not before them: a core node waits for the master's scheduler too.
  # A certificate the two refuse fails the executor at once, with the reason in its log.
  wait_seconds="${wait_seconds:-300}"
  command="$install_dir/ubm cluster executor --scheduler $master:$scheduler_port --bind 0.0.0.0:$executor_port --external-host $external_host --work-dir $work_dir $exposure"
fi

manager="${UBM_SERVICE_MANAGER:-}"
if [ -z "$manager" ]; then
  if [ -d /run/systemd/system ]; then manager=systemd; else manager=loop; fi
fi
case "$manager" in
  systemd)
    $sudo tee "/etc/systemd/system/$name.service" >/dev/null <<EOF
[Unit]
Description=ubm $name (Ballista)
After=network-online.target
Wants=network-online.target

[Service]
User=$service_user
${env_line:+Environment=$env_line}
ExecStart=$command
Restart=always
RestartSec=2
# Stopping sends SIGTERM to ubm alone: a cluster-mode run's driver (a child of the scheduler)
# dies with it and resumes when the scheduler starts again, instead of ending the run.
KillMode=mixed
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
    $sudo systemctl daemon-reload
    $sudo systemctl enable --now "$name.service"
    ;;
  loop)
    # No systemd (a container, a test machine): a shell loop restarts the process when it exits.
    nohup setsid bash -c "while true; do
        $env_line $command
        echo \"$name exited (\$?); restarting in 2 s\"
        sleep 2
      done" >>"$log_dir/$name.log" 2>&1 </dev/null &
    echo $! >"$work_dir/$name.pid"
    ;;
  *)
    echo "bootstrap: UBM_SERVICE_MANAGER=$manager: use systemd or loop" >&2
    exit 1
    ;;
esac
echo "bootstrap: started $name ($manager, as $service_user): $command"

service_log() { # the service's last lines, for the reason it does not listen
  case "$manager" in
    systemd) $sudo journalctl -u "$name.service" -n 30 --no-pager 2>&1 || true ;;
    loop) tail -n 30 "$log_dir/$name.log" 2>&1 || true ;;
  esac
}

# Listening on its port is what a node is for: wait for it, bounded.
waited=0
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  if [ "$waited" -ge "$wait_seconds" ]; then
    echo "bootstrap: $name does not listen on port $port after $wait_seconds s; its last log lines:" >&2
    service_log >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
echo "bootstrap: $name listens on port $port"
