// Package proxy holds what every berth Service proxy backend shares: the
// change trackers that informer callbacks write into, the maps a backend
// applies those changes to, the bounded-frequency runner that rate-limits
// syncs, the informer wiring, and the small Provider interface a backend
// implements.
//
// The shape follows kube-proxy (kubernetes pkg/proxy): callbacks only record
// what changed, and a backend applies the recorded changes in one sync that
// touches only the service ports that changed. The default backend lives in
// proxy/userspace; a kernel backend (nftables) must fit the same Provider.
package proxy
