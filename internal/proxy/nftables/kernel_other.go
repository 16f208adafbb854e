//go:build !linux

package nftables

import (
	"errors"
	"net/netip"
)

var errNotLinux = errors.New("nftables proxy needs Linux")

const routeLocalnetPath = ""

func openKernel(string) (kernel, error) { return nil, errNotLinux }

func clearUDPConntrack([]netip.AddrPort) (uint, error) { return 0, errNotLinux }

func setSysctl(string, string) (string, error) { return "", errNotLinux }

func isPermission(error) bool { return false }

// CleanupLeftovers has nothing to clean up off Linux.
func CleanupLeftovers(string) (bool, error) { return false, nil }
