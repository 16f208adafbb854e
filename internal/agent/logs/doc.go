// Package logs writes and reads container logs in the CRI log format the
// kubelet uses, so that berth's `kubectl logs` behaves like a real node's.
//
// Each record is one line:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <F|P> <message>
//
// where F marks the last (or only) chunk of a line and P a chunk of a line
// that was longer than the writer's line limit. A Writer (used by the
// runtime's per-container shim) appends records to one file per container
// attempt and rotates it by size: the current file keeps its name and rotated
// files get a timestamp suffix, as the kubelet's container log manager names
// them. ReadLogs serves `kubectl logs` (tail, since, limit, timestamps,
// stream, follow) across the rotated files in order.
package logs
