#!/usr/bin/env bash
# The seed demo: start berth, apply Pods foo and bar (labelled type: demo) and
# Service demo (port 8080 -> targetPort 3000), and show the Service in front of
# them. Leaves berth running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${BERTH:-bin/berth}
DATA=${BERTH_DEMO_DIR:-$(mktemp -d /tmp/berth-demo.XXXXXX)}
PORT=${BERTH_DEMO_PORT:-6443}
export KUBECONFIG="$DATA/kubeconfig"
K="kubectl --cache-dir $DATA/kube-cache"

"$BERTH" server --data-dir "$DATA" --secure-port "$PORT" >"$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; echo; echo "berth stopped (data in $DATA)"' EXIT
for _ in $(seq 1 200); do
  [ -f "$KUBECONFIG" ] && $K get --raw /readyz >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat "$DATA/server.log"; exit 1; }
  sleep 0.1
done
echo "berth is running; in another shell: export KUBECONFIG=$KUBECONFIG"
echo
set -x
$K apply -f examples/pods.yaml -f examples/service.yaml
$K get pods,svc -o wide
set +x
echo
echo "Press Ctrl-C to stop berth."
wait $SERVER
