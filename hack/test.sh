#!/usr/bin/env bash
# berth's whole test suite: what CI runs and what a newcomer runs.
# Installs what it needs (as root: iproute2, nftables via apt-get; Go modules),
# checks formatting and vet, runs the unit, integration and end-to-end tests
# (the race detector on the packages that share state across goroutines),
# the fuzz seed corpora, and the benchmark smoke run (go run ./bench -smoke).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v nft >/dev/null || missing+=(nftables)
  command -v unshare >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

log "go mod download"
go mod download

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

log "go vet"
go vet ./...

log "build"
mkdir -p bin
go build -o bin/berth ./cmd/berth
go build -o bin/etcd ./test/tools/etcd
export BERTH_BIN="$PWD/bin/berth" BERTH_ETCD_BIN="$PWD/bin/etcd"

log "unit and integration tests (race detector)"
go test -race -count=1 -timeout 20m ./internal/...

log "end-to-end and harness tests (real kubectl, real processes)"
go test -count=1 -timeout 30m ./test/... ./cmd/... ./bench/...

log "benchmark smoke run (tiny sizes; keeps the harness from rotting)"
smoke=$(mktemp -d)
go run ./bench -smoke -berth "$BERTH_BIN" -etcd "$BERTH_ETCD_BIN" -out "$smoke"
rm -rf "$smoke"

log "all tests passed"
