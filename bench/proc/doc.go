// Package proc starts and ends the processes a benchmark run owns: each in a
// process group of its own, its output kept in a file and a short in-memory
// tail, and every descendant (including the pod processes a node agent
// started and then orphaned) found and killed at the end, because the bench
// process makes itself a child subreaper.
package proc
