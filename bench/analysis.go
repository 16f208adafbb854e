package main

// explanations are the causes found for the targets this harness reports
// as missed, keyed by figure. Each names its evidence; they come from the
// profiled runs of 2026-12-01 (`go run ./bench -only datapath,scale
// -profile DIR`, perf(1) attached to berth server, berth at 6c87269 plus
// the node agent then in progress) and are shown next to a miss. A figure
// without one says so. Re-check them when the code they name changes.
var explanations = map[string]string{
	"throughput-direct":  "a userspace proxy moves every byte over loopback TCP twice (client → proxy, proxy → pod) with two splicing goroutines, on 2 cores shared with the client and the backend; the minimal Go io.Copy proxy measured in the same run gets about the same rate as berth's proxy (and HAProxy, which copies through user space, less than half of it), so the gap is the extra hop, not berth's code. Only a kernel data path can come near 100% of direct: berth's opt-in --proxy-mode=nftables (DNAT, no hop), measured in the same run in a network namespace of its own (the nftables rows)",
	"throughput-haproxy": "see the Service ÷ direct row",
	"latency-keepalive":  "each request and each response takes one more hop: two more loopback socket traversals and two goroutine wake-ups (netpoll → scheduler) on a busy 2-core machine; berth's proxy adds the same as the minimal Go io.Copy proxy (within a few µs) and about as much as HAProxy, and perf of berth server during these requests puts ~70% of its samples in syscalls (splice, epoll, futex) and the Go scheduler (findRunnable, sysmon) and under 3% in berth's proxy code. No userspace proxy adds ≤ 30 µs here; a kernel (nftables) backend adds no hop",
	"latency-newconn":    "per connection the proxy accepts, dials the endpoint (a second loopback TCP handshake: 23% of berth server's samples in dialEndpoint/connect), starts two goroutines that splice and half-closes both sockets (9%); berth-specific work is small in perf (Prometheus series lookup per connection 1.7%, context.AfterFunc 1.5%, allocation 2.6%), the minimal Go proxy adds as much, HAProxy about half (one event loop, no goroutine hand-offs). The dial alone is a full handshake, so no userspace proxy meets ≤ 30 µs; kernel DNAT would",
	"scale-change":       "not analysed for this run: the cause of the misses found on 2026-12-01, a change arriving when the proxy's 30 s re-check of every service port was due and waiting for the whole pass (~300 ms at 10,000 Services; earlier, Prometheus series removal by partial match), is fixed (the pass now goes 256 ports per sync; series are deleted by exact labels); see the per-change list below for which changes were slow and whether the time went to the update call or to the proxy",
	"pods-ready":         "what is left is berth's own path to a running process and API round trips, not probe waiting (a probe looks again every 5 ms until the first success, a readiness change is written at once, and the agent keeps one shim started ahead of need, so a pod start no longer waits for the shim's own ~40 ms Go start-up): create → scheduled (scheduler watch, bind, etcd write), → Running (agent watch, pod network, hand-over to the spare shim, exec, status write), and after the process listens the probe's next look and the status write; see the step breakdown. Pods created back to back can find the spare shim still starting, which brings part of its start-up back",
	"rolling":            "since f8d3848 a connection whose endpoint refuses or resets before sending a byte moves to another endpoint with what the client sent replayed, and since 133a005 the agent holds SIGTERM until the pod's endpoints are no longer ready in any EndpointSlice; a loss now is an endpoint that closed cleanly without answering (passed on by design, for one-way protocols) or a request larger than 64 KiB: see the error kinds",
	"deployments":        "since f8d3848 a connection whose endpoint refuses or resets before sending a byte moves to another endpoint with what the client sent replayed, and since 133a005 the agent holds SIGTERM until the pod's endpoints are no longer ready in any EndpointSlice; a loss now is an endpoint that closed cleanly without answering (passed on by design, for one-way protocols) or a request larger than 64 KiB: see the error kinds",
	"killpod":            "a request already answered in part, or an endpoint that closed cleanly without answering, cannot be moved to another endpoint (the proxy replays only connections reset before the endpoint sent a byte, since f8d3848); see the error kinds",
	"idleconns":          "berth server holds two sockets per proxied connection (client side and endpoint side) and shares one RLIMIT_NOFILE whose hard limit on this machine is exactly 20,000 and cannot be raised (no CAP_SYS_RESOURCE): 10,000 connections need 20,000 fds plus the server's own few dozen (etcd, API, listeners), so the last connections fail with EMFILE (\"too many open files\" in the log). Where the hard limit is higher (systemd units usually set LimitNOFILE=1048576; Go raises the soft limit to the hard one by itself) all 10,000 fit. An idle connection costs two 4 KiB first-read buffers and two goroutine stacks",
	"soak":               "a new connection that an endpoint being replaced closed cleanly without answering (EOF before a response, at a churn moment): the proxy passes a clean close on by design (since f8d3848 it moves only connections reset before any answer); see the error kinds and the failure time against the churn period",
	"soak-goroutines":    "cause not yet analysed",
	"soak-open fds":      "cause not yet analysed",
	"soak-RSS":           "cause not yet analysed",
	"footprint-rss":      "most of it is file-backed: pages of the ~109 MB berth binary (embedded etcd, client-go, every API type, agnhost, the shim) touched at start-up by package init and scheme registration; they are clean and shared with the shims and agnhost pods (PSS is lower), but count in RSS, and how many are touched varies by a few MB from run to run (the same measurement on the development machine just before this run gave 75.9 MB with the seed demo). The anonymous part (Go heap, stacks, etcd's state) is ~20 MB",
}

func explain(key string) string {
	if e, ok := explanations[key]; ok {
		return e
	}
	return "cause not yet analysed"
}
