package vip

import (
	"fmt"
	"net/netip"
)

// Loopback is the AddressManager for service IPs in 127.0.0.0/8 (and ::1):
// Linux routes the whole /8 to lo, so there is nothing to add or remove. Any
// other address is an error, so a misconfigured service range fails loudly
// instead of silently not being reachable. The zero value is ready to use.
type Loopback struct{}

// Ensure checks that ip is a loopback address.
func (Loopback) Ensure(ip netip.Addr) error { return checkLoopback("ensure", ip) }

// Release checks that ip is a loopback address.
func (Loopback) Release(ip netip.Addr) error { return checkLoopback("release", ip) }

func checkLoopback(op string, ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%s service address: invalid IP", op)
	}
	if !ip.Unmap().IsLoopback() {
		return fmt.Errorf("%s service address %s: not a loopback address (127.0.0.0/8 or ::1); use a device address manager for other service ranges", op, ip)
	}
	return nil
}
