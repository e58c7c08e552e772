#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces joined by a veth pair
# (10.77.0.1 and 10.77.0.2), each running `torch-cka launch --nnodes 2` with
# one process, as two real hosts would. Rank 0 serves the store on 10.77.0.1;
# Gloo talks over the veth. The matrix is compared with a
# single-process run, twice: with Gloo finding each host's address towards
# rank 0 by itself, and with GLOO_SOCKET_IFNAME. Needs root (ip netns);
# cleans up after itself.
#
#   bash test/stress/two-hosts.sh [MODEL1 MODEL2 DATA]     (default: the demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
M1=${1:-demo/models/cnn.pt}
M2=${2:-demo/models/mlp.pt}
DATA=${3:-demo/data/digits.npy}
NS0=tcka-host0
NS1=tcka-host1
OUT=$(mktemp -d)
chmod 755 "$OUT"

cleanup() {
  ip netns del "$NS0" 2>/dev/null || true
  ip netns del "$NS1" 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT

if ! ip netns add "$NS0" 2>/dev/null; then
  echo "two-hosts: cannot create network namespaces here (needs root and ip netns); nothing run" >&2
  exit 2
fi
ip netns add "$NS1"
ip link add tcka-veth0 type veth peer name tcka-veth1
ip link set tcka-veth0 netns "$NS0"
ip link set tcka-veth1 netns "$NS1"
ip -n "$NS0" addr add 10.77.0.1/24 dev tcka-veth0
ip -n "$NS1" addr add 10.77.0.2/24 dev tcka-veth1
for ns in "$NS0" "$NS1"; do ip -n "$ns" link set lo up; done
ip -n "$NS0" link set tcka-veth0 up
ip -n "$NS1" link set tcka-veth1 up

CLI=(node dist/cli/main.js)
ARGS=(compare "$M1" "$M2" --data "$DATA" --batch-size 40 --dist-timeout 60)
echo "two-hosts: host 0 = $NS0 (10.77.0.1), host 1 = $NS1 (10.77.0.2)"

# run NAME IFNAME0 IFNAME1: both hosts, each `torch-cka launch --nnodes 2 --nproc 1`.
run() {
  local name=$1 start end status=0 host0 host1
  start=$(date +%s.%N)
  GLOO_SOCKET_IFNAME=$2 ip netns exec "$NS0" "${CLI[@]}" launch --nproc 1 --nnodes 2 --node-rank 0 \
    --master-addr 10.77.0.1 --master-port 29555 -- "${ARGS[@]}" --out "$OUT/$name.json" --quiet &
  host0=$!
  GLOO_SOCKET_IFNAME=$3 ip netns exec "$NS1" "${CLI[@]}" launch --nproc 1 --nnodes 2 --node-rank 1 \
    --master-addr 10.77.0.1 --master-port 29555 -- "${ARGS[@]}" --out "$OUT/$name-rank1.json" --quiet &
  host1=$!
  wait "$host0" || status=$?
  wait "$host1" || status=$?
  end=$(date +%s.%N)
  if [ "$status" -ne 0 ]; then
    echo "two-hosts: $name: FAILED (exit $status)" >&2
    exit "$status"
  fi
  echo "two-hosts: $name: the 2-host run took $(node -e 'console.log((process.argv[2] - process.argv[1]).toFixed(1))' "$start" "$end") s"
}
# Gloo finds each host's address towards rank 0 by itself; then by interface name.
run by-route "" ""
run by-interface tcka-veth0 tcka-veth1

"${CLI[@]}" "${ARGS[@]}" --out "$OUT/one.json" --quiet
for name in by-route by-interface; do
  node -e '
const [two, one, rank1, name] = process.argv.slice(1);
const fs = require("node:fs");
const a = JSON.parse(fs.readFileSync(two, "utf8"));
const b = JSON.parse(fs.readFileSync(one, "utf8"));
let max = 0;
a.cka.forEach((row, i) => row.forEach((v, j) => { if (v !== null) max = Math.max(max, Math.abs(v - b.cka[i][j])); }));
console.log(`two-hosts: ${name}: ${a.model1Layers.length} x ${a.model2Layers.length} layers, ${a.samples} samples in ${a.batches} batches over 2 hosts (${JSON.stringify(a.cli.distributed)}); ` +
  `largest |CKA(2 hosts) - CKA(1 process)| = ${max.toExponential(2)}; only rank 0 wrote results: ${!fs.existsSync(rank1)}`);
if (max > 1e-9 || a.batches !== b.batches || a.samples !== b.samples || fs.existsSync(rank1)) process.exit(1);
' "$OUT/$name.json" "$OUT/one.json" "$OUT/$name-rank1.json" "$name"
done
echo "two-hosts: passed"
