// Package forward implements `berth forward`: local ports bound to a Service,
// a Deployment or a Pod rather than to one pod, so that connections keep
// working while the pods behind them are replaced.
//
// It reads EndpointSlices (or Pods) through a watch and tunnels each client
// connection through the standard pods/portforward subresource, keeping one
// SPDY connection per pod. It needs no network route to the pods and works
// against any Kubernetes API server, berth's own included.
package forward
