#!/usr/bin/env bash
# tests/cluster/local_slurm.sh [start|stop] [DIR] [NODES]
# Starts (or finds running) a real Slurm for the cluster tests: slurmctld + slurmd + munge from Debian's
# packages, configured in DIR (default /tmp/convnet-slurm); `stop` stops the daemons it started. Needs root.
# Prints the SLURM_CONF path on success. NODES=2: two nodes on this one host (two slurmd daemons with their
# own names and ports, the machine's CPUs split between them; a cluster of its own, controller port 6917),
# so that a job spans two nodes as on a real cluster. Set-up: docs/local-slurm.md.
#   install: DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
set -euo pipefail
ACTION=${1:-start}
DIR=${2:-/tmp/convnet-slurm}
NODES=${3:-1}
export SLURM_CONF=$DIR/slurm.conf
if [ "$ACTION" = stop ]; then
  for pidfile in "$DIR"/slurmd*.pid "$DIR/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  exit 0
fi
if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null \
   && sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
  echo "$SLURM_CONF"; exit 0
fi
command -v slurmctld >/dev/null || { echo "slurmctld is not installed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "starting Slurm needs root" >&2; exit 1; }
# a fresh controller and fresh nodes: no job restored from an earlier run, and no job folder of one left in a
# node's spool (spool-node1/job00001 of an earlier cluster made the new cluster's job 1 fail to launch, "File
# exists", and wait requeued and held)
rm -rf "$DIR/state" "$DIR"/spool*
mkdir -p "$DIR/state" "$DIR/spool"
NODE=$(hostname -s)
# the machine's CPUs: nproc alone answers OMP_NUM_THREADS where it is set (the suite's workers set it)
MACHINE_CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
if [ "$NODES" = 2 ]; then
  # node names that do not resolve: a job's processes meet at MASTER_ADDR=127.0.0.1 (the tests export it)
  CPUS=$(( MACHINE_CPUS / 2 > 0 ? MACHINE_CPUS / 2 : 1 ))
  PORTS="SlurmctldPort=6917"
  NODE_LINES="NodeName=node1 NodeHostname=$NODE NodeAddr=127.0.0.1 Port=17001 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
NodeName=node2 NodeHostname=$NODE NodeAddr=127.0.0.1 Port=17002 CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
  DAEMONS="node1 node2"
  SUFFIX=-%n
else
  PORTS=""
  NODE_LINES="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$MACHINE_CPUS RealMemory=1000 State=UNKNOWN"
  DAEMONS=""
  SUFFIX=""
fi
cat > "$SLURM_CONF" <<CONF
ClusterName=ci$NODES
SlurmctldHost=$NODE(127.0.0.1)
$PORTS
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool$SUFFIX
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd$SUFFIX.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd$SUFFIX.log
InactiveLimit=0
MinJobAge=300
KillWait=5
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
[ -f /etc/munge/munge.key ] || mungekey --create
install -d -o munge -g munge -m 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
/usr/sbin/slurmctld -f "$SLURM_CONF"
if [ -z "$DAEMONS" ]; then
  /usr/sbin/slurmd -f "$SLURM_CONF"
else
  for name in $DAEMONS; do /usr/sbin/slurmd -f "$SLURM_CONF" -N "$name"; done
fi
for _ in $(seq 1 150); do
  [ "$(sinfo -h -o '%D %T' 2>/dev/null)" = "$NODES idle" ] && { echo "started Slurm in $DIR" >&2; echo "$SLURM_CONF"; exit 0; }
  sleep 0.2
done
echo "Slurm did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
exit 1
