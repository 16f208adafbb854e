// Package agent is berth's node agent, its kubelet: it registers the node,
// watches the Pods bound to it through the API (it is an API client and
// nothing more) and runs each Pod's containers as local processes with the
// Pod's own network identity, probes, restarts, logs and graceful
// termination, reporting everything back through pods/status and events as
// a kubelet does, so that kubectl shows READY, STATUS and RESTARTS as on a
// real cluster.
//
// One worker goroutine per Pod (like the kubelet's pod workers) owns that
// Pod's containers: it sets up the network (internal/agent/network), starts
// init containers in order and then the containers (internal/agent/runtime,
// processes built by internal/agent/podspec), restarts them with the
// kubelet's back-off, runs their probes (internal/agent/probe), stops them
// with preStop hooks, SIGTERM and SIGKILL when the Pod is deleted, tears
// everything down and confirms the deletion. The status it reports is
// computed by a pure function (status.go) from what it observed.
//
// Containers outlive the agent: stopping Run leaves them running, and a new
// Agent over the same state directory adopts them (same processes, restart
// counts continue, readiness is taken from the Pod's last status until the
// probes say otherwise). Whatever belongs to no Pod of the node any more
// (processes, network namespaces, addresses, logs) is removed at start and
// every minute.
//
// The agent also serves the kubelet API the API server relays kubectl logs,
// exec and port-forward to (internal/agent/server), on the port it
// advertises in the Node's daemonEndpoints and its berth.dev/agent-endpoint
// annotation.
package agent
