// Package agnhost is berth's built-in stand-in for the Kubernetes e2e test image
// registry.k8s.io/e2e-test-images/agnhost, so that manifests written for a real
// cluster (netexec, serve-hostname, pause) run unchanged as berth Pods.
//
// The node agent runs `berth agnhost <args...>` as the container's process; Main
// implements that command. Each subcommand mirrors upstream agnhost
// (kubernetes test/images/agnhost) in flag names, defaults, endpoints and
// response bodies, including upstream's quirks where a client could observe
// them (for example /dial omits "responses" when its last try failed, and the
// UDP server lower-cases what it echoes).
//
// Two environment variables adapt the image to processes that share the host:
//
//   - HOSTNAME: a container sees its Pod's name as hostname. berth's processes
//     share the host's UTS namespace, so when HOSTNAME is set and non-empty
//     (the agent sets it to the Pod name, as the kubelet does) it is the
//     hostname served by /hostname, the UDP "hostname" command and
//     serve-hostname; otherwise os.Hostname is used.
//   - BERTH_BIND_ADDRESS: upstream listens on all interfaces. In berth's
//     loopback network mode each Pod has its own 127.x address and several
//     Pods may use the same port, so when this is set (the agent sets it to
//     the Pod IP) every server binds that address instead.
//
// Log lines go to the given stderr in upstream's log.Printf format rather than
// through slog: they are what `kubectl logs` shows, and people compare them
// with what the real image prints.
//
// Exit codes: Main returns nil for a normal stop (context cancelled), an
// *ExitError where upstream calls os.Exit with a code (/exit, /shutdown,
// pause), and any other error for bad usage or a failed server; ExitCode maps
// all three to a process exit code.
package agnhost
