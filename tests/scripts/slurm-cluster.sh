#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests of the Slurm executor, without systemd:
#
#   tests/scripts/slurm-cluster.sh install   Debian's slurmctld, slurmd, slurm-client and munge
#   tests/scripts/slurm-cluster.sh start     munged, slurmctld and slurmd, then a job to prove it
#   tests/scripts/slurm-cluster.sh stop      the three daemons
#
# Run as root. The node advertises 8 CPUs (more than a CI machine has, so that several jobs run
# at once) and 2 fake GPUs (character devices, enough for Slurm to hand out CUDA_VISIBLE_DEVICES).
# Everything the cluster writes goes under $ARUN_SLURM_DIR (default /tmp/arun-slurm). The daemons
# are started with no inherited stdio, so that they never hold a CI step's output open.
set -euo pipefail

dir="${ARUN_SLURM_DIR:-/tmp/arun-slurm}"
host="$(hostname -s)"

fail() { echo "slurm-cluster: $*" >&2; exit 1; }

install() {
  local missing=()
  for package in slurmctld slurmd slurm-client munge; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # The packages' scripts would start the services; policy-rc.d's 101 tells them not to.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' RETURN
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

write_config() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/dev" /etc/slurm
  for i in 0 1; do
    [ -c "$dir/dev/fakegpu$i" ] || mknod "$dir/dev/fakegpu$i" c 1 3
  done
  local memory
  memory=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=arun-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
MinJobAge=3600
KillWait=5
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/gres.conf <<EOF
NodeName=$host Name=gpu File=$dir/dev/fakegpu[0-1]
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  [ -f /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge
  chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
  # `stop` stops munged only when this script started it (a machine's own munged stays).
  mkdir -p "$dir" && touch "$dir/munged.started"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "munged did not start"
}

start() {
  [ "$(id -u)" -eq 0 ] || fail "run as root (it writes /etc/slurm and starts daemons)"
  command -v slurmctld >/dev/null || fail "Slurm is not installed; run \`$0 install\` first"
  if timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    echo "slurm-cluster: already running"
    return 0
  fi
  write_config
  start_munge
  setsid slurmctld -D -i </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  setsid slurmd -D -N "$host" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
  for _ in $(seq 100); do
    timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.2
  done
  timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld did not come up; see $dir/log"
  # A node left down by an earlier cluster's saved state.
  scontrol update nodename="$host" state=resume 2>/dev/null || true
  timeout 60 srun --quiet --immediate=30 true || fail "a test job did not run; see $dir/log"
  echo "slurm-cluster: up ($host, 8 CPUs, 2 fake GPUs, logs in $dir/log)"
}

stop() {
  for daemon in slurmd slurmctld; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 0.1
  done
  pkill -9 -x slurmd 2>/dev/null || true
  pkill -9 -x slurmctld 2>/dev/null || true
  if [ -e "$dir/munged.started" ]; then
    pkill -x munged 2>/dev/null || true
    rm -f "$dir/munged.started"
  fi
  echo "slurm-cluster: stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) fail "usage: $0 install|start|stop" ;;
esac
