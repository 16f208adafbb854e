// Package backend is the benchmark's own backend: an HTTP server with the
// agnhost netexec endpoints the load generator uses (/echo?msg=, /hostname,
// /healthz, /readyz), a bulk server that streams a requested number of
// bytes, and an identity server that writes its name to every connection
// and closes it. The bench binary runs it as `bench backend` (as a Pod's
// process, or directly), and the scale benchmark runs identity servers in
// process.
package backend
