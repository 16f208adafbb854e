// Package ipam hands out IPv4 addresses from one prefix and remembers them
// on disk, so an address is never given to two owners, even across restarts.
//
// The on-disk layout follows the CNI host-local plugin: one file per
// allocated address, named by the address (for example "10.244.0.2") and
// holding the owner (a pod UID) on its first line and a free-form note (the
// pod's namespace/name) on the second; a "last_reserved_ip" file remembers
// where the round-robin scan stopped; a "lock" file is flock'ed for the life
// of an Allocator so a second process cannot share the directory.
//
// Allocation is round-robin from the address after the last one handed out,
// wrapping at the end of the prefix, as host-local does: a released address
// is reused only after the rest of the range has been tried, which keeps
// stale connections and stale endpoints from reaching a new pod that
// happens to get a just-freed address.
//
// Never handed out: the network and broadcast addresses, every address
// whose last octet is 0 or 255 (valid inside a /16, but many clients still
// treat them as network/broadcast), and the addresses listed in
// Config.Reserved (the gateway, 127.0.0.1).
package ipam
