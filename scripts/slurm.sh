#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm executor's tests (and for trying it out):
#
#   scripts/slurm.sh up      install Debian's slurmctld, slurmd, slurm-client and munge if missing,
#                            write a one-node slurm.conf, start munged, slurmctld and slurmd, wait for idle
#   scripts/slurm.sh down    stop the daemons by their pid files
#   scripts/slurm.sh status  sinfo
#
# Needs root (or sudo). The configuration follows the facts measured on this project's machines:
# select/cons_tres with CR_CPU, proctrack/linuxproc, task/none, no accounting database (job ends are
# logged to /var/log/slurm/jobcomp.log), cred_expire=10 so requeued tasks start again quickly.
set -euo pipefail

say() { echo "slurm: $*"; }
die() { echo "slurm: error: $*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "'$*' needs root"; fi
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  say "installing slurmctld, slurmd, slurm-client, munge (Debian packages)"
  # Keep the packages' postinst scripts from starting services.
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod +x /usr/sbin/policy-rc.d
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null || die "apt-get install failed"
}

write_conf() {
  local h node
  h=$(hostname -s)
  node=$(slurmd -C | head -1)
  as_root install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  as_root tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=cemiface
SlurmctldHost=$h(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=30
MinJobAge=300
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$h Default=YES MaxTime=INFINITE State=UP
CONF
}

running() { [ -f "$1" ] && [ -n "$(ps -o stat= -p "$(cat "$1")" 2>/dev/null | grep -v Z)" ]; }

up() {
  install_packages
  [ -s /etc/munge/munge.key ] || as_root mungekey -c -k /etc/munge/munge.key
  as_root install -d -o munge -g munge /run/munge
  running /run/munge/munged.pid || as_root runuser -u munge -- /usr/sbin/munged
  write_conf
  running /run/slurmctld.pid || as_root /usr/sbin/slurmctld
  running /run/slurmd.pid || as_root /usr/sbin/slurmd
  for _ in $(seq 1 120); do
    case "$(sinfo -h -o %T 2>/dev/null)" in idle|mixed|allocated) say "up: $(sinfo -h -o '%P %D %T %C')"; return;; esac
    sleep 0.5
  done
  die "the node did not become idle in 60 s; see /var/log/slurm/"
}

down() {
  for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    if running "$f"; then as_root kill -TERM "$(cat "$f")" || true; fi
  done
  say "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
