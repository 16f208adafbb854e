// Package nftables is berth's opt-in kernel-mode Service proxy backend: it
// programs one nftables table (ip berth) so that the kernel DNATs connections
// to service addresses straight to endpoints, as kube-proxy's nftables mode
// does, instead of relaying bytes through berth's own sockets.
//
// It is split in two layers. The planning layer (plan.go, planner.go) turns
// service ports and endpoints into the desired rule set, and the difference
// between two rule sets into one transaction, as plain Go data with no kernel
// in sight. The kernel layer (kernel_linux.go) sends such a transaction to
// nf_tables over netlink with github.com/google/nftables, in one batch.
// Proxier ties both to the shared change trackers of package proxy. IPv4
// only.
package nftables
