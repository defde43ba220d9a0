#!/usr/bin/env bash
# Real launchers for the distributed-job tests, on a CI machine where we are root:
# Open MPI (mpirun) and a single-host SLURM (munge + slurmctld + slurmd, one node, one
# partition); and Chromium for the HTML report's browser test. Idempotent; prints what it
# could not do and never fails the build itself: the tests that need a launcher or the browser
# say why they are skipped.
set -u
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    echo "ci_services: not root or no apt-get: real srun/mpirun and browser tests will be skipped"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null 2>&1 || true
# A real Prometheus server for tests/test_prometheus_real.py (it starts its own, on loopback)
apt-get install -y -q prometheus >/dev/null 2>&1 \
    && echo "ci_services: $(prometheus --version 2>/dev/null | head -1)" \
    || echo "ci_services: apt-get install prometheus failed: its test will be skipped"
# (the test runs its own server on free loopback ports; a system one on :9090 is not used)
# Headless Chromium for the HTML report's browser test (driven by Playwright, offline).
apt-get install -y -q chromium >/dev/null 2>&1 \
    || echo "ci_services: chromium not installed: the HTML report's browser test will be skipped"
apt-get install -y -q openmpi-bin slurmd slurmctld slurm-client munge >/dev/null 2>&1 \
    || { echo "ci_services: apt-get install failed"; exit 0; }

host=$(hostname)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
[ -f /etc/munge/munge.key ] || /usr/sbin/mungekey -c >/dev/null 2>&1 \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown munge:munge /etc/munge/munge.key /run/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 30); do
    if sinfo -h -o %a 2>/dev/null | grep -q up; then
        echo "ci_services: mpirun $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}'), SLURM up"
        exit 0
    fi
    sleep 1
done
echo "ci_services: SLURM did not come up (see /var/log/slurm/)"
exit 0
