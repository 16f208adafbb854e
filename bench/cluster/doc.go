// Package cluster drives berth for the benchmarks: it starts, restarts,
// kills and stops `berth server` processes on fresh or reused data
// directories, waits for /readyz, gives client-go clients and kubectl runs
// against them, scrapes /metrics, builds the Pods and Services the
// benchmarks use, records when Pods and EndpointSlices change through
// watches, and runs a standalone etcd as the storage peer.
package cluster
