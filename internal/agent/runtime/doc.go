// Package runtime runs the containers of berth's Pods as plain local
// processes, one supervising shim per container, so that they outlive a
// restart of berth and can be adopted afterwards with their exit codes intact.
//
// The shim is berth itself re-executed with a hidden subcommand that calls
// ShimMain. Runtime.Start launches it; it detaches (double fork, its own
// session), starts the workload in a new process group (inside the Pod's
// network namespace when one is given), owns the workload's stdout and stderr
// and writes them to the container log, and records the exit in the
// container's state directory. Everything the agent needs lives in that
// directory, so a new Runtime over the same StateDir sees exactly what the old
// one saw. state.go describes the on-disk layout; README.md the design
// choices (shim, pidfd, Pdeathsig and subreaper, network namespaces).
package runtime
