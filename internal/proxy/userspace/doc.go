// Package userspace is berth's default Service proxy backend: it listens on
// every address of every proxied service port (cluster IPs, node ports,
// external IPs, load-balancer ingress IPs) and forwards each TCP connection
// or UDP session to one endpoint, as kube-proxy's old userspace mode did.
// It needs no kernel packet rules, so it runs wherever berth runs, and it
// implements proxy.Provider so a kernel backend can replace it.
package userspace
