// Package network gives every Pod on a berth node its own network identity,
// so several replicas can all listen on the same containerPort, as they do
// in Kubernetes.
//
// There are two modes (see ResolveMode):
//
//   - netns (root on Linux): each Pod gets a named network namespace
//     bind-mounted at /run/netns/berth-<key> (usable with `ip netns exec`),
//     with lo up and an eth0 that is one end of a veth pair. The host end
//     (vb-<key>) is a port of a Linux bridge (default berth0, created if
//     missing) that carries the gateway address, the first address of the
//     pod CIDR (default 10.244.0.1/16). eth0 gets an address from the CIDR
//     and a default route via the gateway, so pods reach each other and the
//     host. Hairpin mode is on for every bridge port so a pod can later reach
//     itself through a Service IP, and net.ipv4.ip_forward is enabled in the
//     namespace berth runs in for the same reason. There is no NAT to the
//     outside world.
//   - loopback (anyone, any OS berth builds on): each Pod gets an address
//     from 127.244.0.0/16 (mirroring 10.244.0.0/16) and processes bind it;
//     there is no namespace. On Linux the local routing table holds
//     "local 127.0.0.0/8 dev lo", so every 127.x address is already local
//     and nothing has to be added to lo: verified on the development
//     machine (kernel 6.18) with `ip route show table local` and by binding
//     127.244.0.2 without configuring it. macOS routes only 127.0.0.1 by
//     default; there an alias per address would be needed, which this
//     package does not add.
//
// <key> is the first 12 characters of the pod UID with dashes removed (a
// hash of the UID if that is not plain lowercase alphanumerics), which keeps
// names inside the 15-byte interface-name limit and recognisable.
//
// Address management lives in the ipam sub-package: one file per address
// under Config.StateDir/<mode>/, holding the pod UID, so an address is
// never handed out twice, even across restarts. Setup of a pod that already
// has an address and a namespace adopts them (returns the same Attachment
// and repairs what is missing), so an agent that restarts keeps its pods'
// networking; List returns every attachment so the agent can Teardown
// those whose pods no longer exist.
//
// Threads and namespaces: all netlink work on the host side runs on
// ordinary goroutines, which are always in berth's own namespace. Work inside
// a pod namespace runs on a dedicated goroutine locked to its OS thread (see
// InNetNS); the thread is moved back before it is unlocked, and if moving
// back fails it stays locked so the Go runtime destroys it instead of
// reusing it. Namespaces are created on a thread that is never unlocked.
//
// One berth agent owns one StateDir, bridge and CIDR; two agents on one host
// need distinct values for all three.
package network
