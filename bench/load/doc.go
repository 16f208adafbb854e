// Package load is the benchmark's own load generator: a minimal HTTP/1.1
// client over raw TCP for latency (so every target is measured by the same
// few lines of code), a bulk byte stream for throughput, fixed-rate request
// streams for reliability runs, a holder of many idle connections, and the
// percentile arithmetic. Every loop is bounded by a count and a deadline.
package load
