// Package lbipam gives Services of type LoadBalancer an IPv4 address from a
// configured pool and publishes it in status.loadBalancer.ingress, the job a
// cloud provider's service controller (or MetalLB, or Cilium's LB IPAM) does
// on a real cluster.
//
// Allocations live in memory and are rebuilt at start from the addresses
// already published in Service status, so a restart never hands out an
// address twice.
package lbipam
