package main

// explanations are the causes found for the targets this harness reports
// as missed, keyed by figure. Each names its evidence; they come from the
// profiled runs of 2026-12-01 (`go run ./bench -only datapath,scale
// -profile DIR`, perf(1) attached to berth server, berth at 6c87269 plus
// the node agent then in progress) and are shown next to a miss. A figure
// without one says so. Re-check them when the code they name changes.
var explanations = map[string]string{
	"throughput-direct":  "a userspace proxy moves every byte over loopback TCP twice (client → proxy, proxy → pod) with two splicing goroutines, on 2 cores shared with the client and the backend; the minimal Go io.Copy proxy measured in the same run gets the same rate as berth's proxy (and HAProxy, which copies through user space, half of it), so the gap is the extra hop, not berth's code. Only a kernel data path (nftables DNAT, the planned internal/proxy/nftables backend) can come near 100% of direct",
	"throughput-haproxy": "see the Service ÷ direct row",
	"latency-keepalive":  "each request and each response takes one more hop: two more loopback socket traversals and two goroutine wake-ups (netpoll → scheduler) on a busy 2-core machine; berth's proxy adds the same as the minimal Go io.Copy proxy (within a few µs) and about as much as HAProxy, and perf of berth server during these requests puts ~70% of its samples in syscalls (splice, epoll, futex) and the Go scheduler (findRunnable, sysmon) and under 3% in berth's proxy code. No userspace proxy adds ≤ 30 µs here; a kernel (nftables) backend adds no hop",
	"latency-newconn":    "per connection the proxy accepts, dials the endpoint (a second loopback TCP handshake: 23% of berth server's samples in dialEndpoint/connect), starts two goroutines that splice and half-closes both sockets (9%); berth-specific work is small in perf (Prometheus series lookup per connection 1.7%, context.AfterFunc 1.5%, allocation 2.6%), the minimal Go proxy adds as much, HAProxy about half (one event loop, no goroutine hand-offs). The dial alone is a full handshake, so no userspace proxy meets ≤ 30 µs; kernel DNAT would",
	"scale-change":       "removing an endpoint's Prometheus series is a scan of every series: metrics.forget calls DeletePartialMatch on four metric vectors, which walks all their series (one per service port × endpoint); one change at 10,000 Services removes 10 endpoints, so each sync spends ~250 ms there (perf during the changes: 88% of berth server's CPU in userspace.(*metrics).forget → prometheus.(*MetricVec).DeletePartialMatch → deleteByLabels/matchPartialLabels). Deleting the exact series the proxier created (DeleteLabelValues with remembered label values) makes it O(1)",
	"pods-ready":         "the agent writes pod status at most every 200 ms unless forced (statusMinInterval in internal/agent/agent.go): the Running status is written when the container starts, and the Ready condition, known some 40 ms later once the quick probe retries see agnhost listen, waits for the rest of those 200 ms; the step breakdown shows Running → Ready p50 ≈ 205 ms with a probe and 0 without. Writing at once when the Ready condition changes (rate-limiting only repeated status churn) would bring this to about the no-probe figure, which is ~60 ms beyond the process's own start: scheduling ~7 ms, and the agent taking the pod from its watch, starting the shim (a process of the ~108 MB berth binary) and writing the status. (Before f8d3848 the first failed probe also cost a whole period, 1 s.)",
	"rolling":            "since f8d3848 the proxy moves a connection whose endpoint resets before sending a byte (a listener closed on SIGTERM with connections still queued, a killed process) to another endpoint, replaying what the client sent (up to 64 KiB); before it, 1-2 requests per replacement were lost to that race. A loss now is an endpoint that closed cleanly without answering (passed on by design, for one-way protocols) or a request larger than 64 KiB: see the error kinds",
	"deployments":        "as in the rolling replacement: since f8d3848 a reset before any answer is retried on another endpoint; what remains is a clean close without an answer, passed on by design (see the error kinds)",
	"killpod":            "a request already answered in part, or an endpoint that closed cleanly without answering, cannot be moved to another endpoint (the proxy replays only connections reset before the endpoint sent a byte, since f8d3848); see the error kinds",
	"idleconns":          "berth server holds two sockets per proxied connection (since f8d3848 the first bytes each way are read by hand before io.Copy takes over, so an idle connection no longer holds a splice pipe: before, io.Copy took a pipe from Go's pool before waiting for data, ~6 fds per idle connection, and only ~3,600-4,700 connections fit). 10,000 connections need 20,000 fds plus the server's own (etcd, API, listeners), and berth server shares one RLIMIT_NOFILE whose hard limit here is exactly 20,000 and cannot be raised (no CAP_SYS_RESOURCE); the last connections fail with EMFILE (\"too many open files\" in the log). It also costs ~50 KB of memory per idle connection (two 16 KiB first-read buffers and two goroutine stacks: ~500 MB anonymous at 10,000). Raising LimitNOFILE (and the server raising its own soft limit, which Go does) would let 10,000 through; smaller first-read buffers would cut the memory",
	"soak":               "a new connection that an endpoint being replaced closed cleanly without answering (EOF before a response, at a churn moment): the proxy passes a clean close on by design (since f8d3848 it moves only connections reset before any answer); see the error kinds and the failure time against the churn period",
	"soak-goroutines":    "cause not yet analysed",
	"soak-open fds":      "cause not yet analysed",
	"soak-RSS":           "cause not yet analysed",
	"footprint-rss":      "most of it is file-backed: pages of the ~108 MB berth binary (embedded etcd, client-go, every API type, agnhost, the shim) touched at start-up by package init and scheme registration; they are clean and shared with the shims (PSS is lower), but count in RSS. The anonymous part (Go heap, stacks, etcd's state) is ~20 MB",
}

func explain(key string) string {
	if e, ok := explanations[key]; ok {
		return e
	}
	return "cause not yet analysed"
}
