#!/usr/bin/env bash
# Real services for the tests that need them, on a CI machine where we are root: Prometheus
# (tests/test_prometheus_real.py), headless Chromium driven by Playwright's Python package from
# the `test` extra (tests/test_report_html.py, which launches /usr/bin/chromium), Open MPI
# (mpirun) and a single-host SLURM (munge + slurmctld + slurmd, one node, one partition) for
# tests/test_job_launchers.py. Idempotent. Ends by checking that each service is usable.
# Under CI=true anything missing is a failure (exit 1, one line naming what failed): those
# tests fail there too rather than skip (tests/services.py). Elsewhere it only warns, and the
# tests that need a missing service are skipped with the reason printed.
set -u
case "${CI:-}" in true | TRUE | True | 1 | yes) ci=1 ;; *) ci=0 ;; esac
CHROMIUM=/usr/bin/chromium   # where tests/test_report_html.py looks for it
missing=""                   # "name (why); ..." of the services that are not usable

say() { echo "ci_services: $*"; }
miss() { missing="${missing:+$missing; }$1"; say "not usable: $1"; }

install() {  # install WHAT PACKAGE...: apt-get install, one line if it fails
    local what="$1"
    shift
    if ! apt-get install -y -q "$@" >/tmp/ci_services.apt.log 2>&1; then
        say "apt-get install $* failed (for $what): $(tail -1 /tmp/ci_services.apt.log)"
        return 1
    fi
}

start_slurm() {
    local host
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
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged \
        || say "munged did not start"
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld || say "slurmctld did not start"
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd || say "slurmd did not start"
}

slurm_up() { sinfo -h -o %a 2>/dev/null | grep -q up; }

# -- install and start (root with apt-get only) ---------------------------------------------
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null 2>&1 || say "apt-get update failed; installing from the cache"
    # (the Prometheus test runs its own server on free loopback ports; a system one on :9090
    # is not used)
    command -v prometheus >/dev/null || install Prometheus prometheus
    [ -x "$CHROMIUM" ] || install Chromium chromium
    command -v mpirun >/dev/null || install "Open MPI" openmpi-bin
    command -v pdflatex >/dev/null || install "LaTeX (card --format latex)" texlive-latex-base
    if ! command -v srun >/dev/null || ! command -v slurmctld >/dev/null; then
        install SLURM slurmd slurmctld slurm-client munge
    fi
    if command -v slurmctld >/dev/null && ! slurm_up; then
        start_slurm
        for _ in $(seq 1 30); do
            slurm_up && break
            sleep 1
        done
    fi
else
    say "not root or no apt-get: nothing installed; checking what this machine already has"
fi

# -- check: each service as its tests use it -------------------------------------------------
if command -v prometheus >/dev/null; then
    say "$(prometheus --version 2>&1 | head -1)"
else
    miss "Prometheus (no prometheus binary)"
fi
if [ -x "$CHROMIUM" ]; then
    say "Chromium at $CHROMIUM: $("$CHROMIUM" --version 2>/dev/null | head -1)"
else
    miss "Chromium (nothing at $CHROMIUM)"
fi
if command -v mpirun >/dev/null; then
    say "mpirun $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}')"
else
    miss "Open MPI (no mpirun)"
fi
if ! command -v srun >/dev/null; then
    miss "SLURM (no srun)"
elif slurm_up; then
    say "SLURM up ($(sinfo -h -o '%P %a %D' 2>/dev/null | head -1))"
else
    miss "SLURM (no controller answering sinfo; see /var/log/slurm/)"
fi

if [ -z "$missing" ]; then
    say "all services up"
    exit 0
fi
if [ "$ci" = 1 ]; then
    say "CI=true and these services the tests need could not be set up: $missing" >&2
    exit 1
fi
say "warning: not set up: $missing; the tests that need them will be skipped"
exit 0
