#!/usr/bin/env bash
# The README's evaluation report: on MovieLens-100K, the SASRec-class pipeline against the dense
# (MF-BPR) pipeline and popularity, on the same leave-one-out split. About 5-10 minutes on 2 cores.
#   bash examples/ml100k/report.sh [OUT]     (default OUT: benchmarks/results/report-ml100k)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${ML100K:-$root/../shared/data/ml-100k}"
out="${1:-$root/benchmarks/results/report-ml100k}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
recengine store ingest "$data" --store "$work/ml.duckdb"
recengine train --config "$here/sasrec.toml" --store "$work/ml.duckdb" --models "$work/models"
recengine train --config "$here/dense.toml" --store "$work/ml.duckdb" --models "$work/models"
recengine compare ml-sasrec ml-dense --store "$work/ml.duckdb" --models "$work/models" --report "$out"
