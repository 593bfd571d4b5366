#!/usr/bin/env bash
# Run (part of) the smoke preset through a real, single-node Slurm on this machine and check that its results
# equal a local run's, byte for byte.
#
#   workflow/cluster/slurm-smoke.sh LOCAL_RUN_DIR [TARGET...]
#
# LOCAL_RUN_DIR holds a finished local smoke run (`snakemake --cores all --config preset=smoke`, e.g. the
# repository root after CI's run). With no TARGET the whole smoke DAG goes through Slurm; with targets (CI
# passes the theory results) only the jobs that make them. Every CSV and .npz the Slurm run writes under
# results/ must equal the local one (saliency-sanity compare: timing columns aside).
#
# Needs root and apt (Debian 12 ships Slurm 22.05): it installs slurmctld, slurmd and munge, configures
# one node named after this host with its cores and memory, and starts the daemons without systemd.
# The Snakemake side is the `cluster` extra (pip install -e ".[cluster]") and workflow/profiles/slurm.
set -euo pipefail
local_run=$(realpath "${1:?usage: slurm-smoke.sh LOCAL_RUN_DIR [TARGET...]}")
shift
repo=$(realpath "$(dirname "$0")/../..")
run_dir=${SLURM_SMOKE_DIR:-$(mktemp -d /tmp/slurm-smoke.XXXXXX)}
start=$(date +%s)

echo "== install Slurm and munge"
if ! command -v slurmctld > /dev/null; then
    packages=(slurmd slurmctld slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${packages[@]}" || {
        apt-get update && apt-get install -y --no-install-recommends "${packages[@]}"; }
fi

echo "== configure a one-node cluster on $(hostname -s)"
host=$(hostname -s)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=saliency-smoke
SlurmctldHost=$host
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

echo "== start munge, slurmctld and slurmd"
[ -s /etc/munge/munge.key ] || mungekey --create --force
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
pgrep -x munged > /dev/null || runuser -u munge -- munged
pgrep -x slurmctld > /dev/null || slurmctld
pgrep -x slurmd > /dev/null || slurmd
for _ in $(seq 30); do
    sinfo --noheader --states=idle,mixed 2>/dev/null | grep -q . && break
    scontrol update nodename="$host" state=resume 2>/dev/null || true
    sleep 1
done
sinfo

echo "== the smoke preset through Slurm in $run_dir"
export SALIENCY_DATA_MIRROR="${SALIENCY_DATA_MIRROR:-$repo/../shared/data}"
snakemake --snakefile "$repo/Snakefile" --directory "$run_dir" --profile "$repo/workflow/profiles/slurm" \
    --config preset=smoke -- "$@"

echo "== compare with the local run in $local_run"
saliency-sanity compare "$run_dir" "$local_run"
echo "== Slurm smoke took $(( $(date +%s) - start )) s"
