// Package probe runs the liveness, readiness and startup probes of berth's
// containers as the kubelet does: httpGet (http or https to the Pod's IP),
// tcpSocket and exec actions, each bounded by timeoutSeconds, repeated every
// periodSeconds after initialDelaySeconds, and turned into a state by
// successThreshold and failureThreshold.
//
// A Prober performs one attempt; a Tracker applies the thresholds (pure, so
// its rules are table-tested); Run is the per-probe loop the agent starts
// for each running container and stops when the container goes. The agent
// acts on the reported state: readiness feeds the Pod's Ready condition,
// and a liveness or startup failure restarts the container.
package probe
