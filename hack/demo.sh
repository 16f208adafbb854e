#!/usr/bin/env bash
# The seed demo. Starts berth, runs Pods foo and bar (labelled type: demo)
# behind Service demo (port 8080 -> targetPort 3000), shows that the Service's
# address answers from both, replaces foo with baz while the same address keeps
# answering, and shows that a `kubectl port-forward pod/foo` breaks with its pod.
# berth keeps running afterwards until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${BERTH:-bin/berth}
DATA=${BERTH_DEMO_DIR:-$(mktemp -d /tmp/berth-demo.XXXXXX)}
PORT=${BERTH_DEMO_PORT:-6443}
NETWORK=${BERTH_DEMO_NETWORK:-loopback}
export KUBECONFIG="$DATA/kubeconfig"
k() { kubectl --cache-dir "$DATA/kube-cache" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

"$BERTH" server --data-dir "$DATA" --secure-port "$PORT" --pod-network "$NETWORK" >"$DATA/server.log" 2>&1 &
SERVER=$!
PF=""
cleanup() {
  [ -n "$PF" ] && kill "$PF" 2>/dev/null || true
  k delete pods --all --grace-period=2 --timeout=20s >/dev/null 2>&1 || true
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  "$BERTH" cleanup --data-dir "$DATA" >/dev/null || true
  echo; echo "berth stopped; its pods are gone (data, logs and kubeconfig in $DATA)"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  [ -f "$KUBECONFIG" ] && k get --raw /readyz >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$DATA/server.log"; exit 1; }
  sleep 0.1
done
say "berth is running (pod network: $NETWORK). In another shell: export KUBECONFIG=$KUBECONFIG"

ask() { # ask ADDR N: N requests, one connection each, print who answered
  for _ in $(seq 1 "$2"); do curl -s --max-time 2 "http://$1/hostname" || printf 'FAILED'; echo; done | sort | uniq -c
}

say "kubectl apply -f examples/pods.yaml -f examples/service.yaml"
k apply -f examples/pods.yaml -f examples/service.yaml
k wait --for=condition=Ready pod/foo pod/bar --timeout=60s
k get pods,svc -o wide
IP=$(k get svc demo -o jsonpath='{.spec.clusterIP}')

say "10 requests to the Service, $IP:8080"
ask "$IP:8080" 10

say "kubectl port-forward pod/foo 9000:3000 (tied to one pod)"
k port-forward pod/foo 9000:3000 >"$DATA/port-forward.log" 2>&1 &
PF=$!
sleep 1
curl -s --max-time 2 http://127.0.0.1:9000/hostname; echo

say "replace foo by baz: kubectl delete pod foo; kubectl apply -f examples/replacement.yaml"
k delete pod foo
k apply -f examples/replacement.yaml
k wait --for=condition=Ready pod/baz --timeout=60s
k get pods -o wide

say "10 requests to the same Service address, $IP:8080"
ask "$IP:8080" 10

say "the port-forward to foo is broken"
curl -s --max-time 2 http://127.0.0.1:9000/hostname || echo "request failed, as it does on a real cluster"
tail -n 2 "$DATA/port-forward.log" || true

say "done. berth keeps running; press Ctrl-C to stop it."
wait "$SERVER"
