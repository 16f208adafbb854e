// Package vip makes Service IPs local to this host so that the userspace
// proxy can bind listeners on them. Loopback covers 127.0.0.0/8 and ::1,
// which Linux already delivers locally; Netlink puts /32 and /128 addresses
// on a device that berth owns (berth-svc0 by default), the way kube-proxy's
// IPVS mode uses kube-ipvs0. Both implement proxy.AddressManager.
package vip
