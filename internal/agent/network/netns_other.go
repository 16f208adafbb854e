//go:build !linux

package network

import (
	"context"
	"errors"
	"net/netip"
)

var errNoNetNS = errors.New("network namespaces need Linux")

// InNetNS runs fn; only nsPath "" is supported outside Linux.
func InNetNS(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	return errNoNetNS
}

func (n *Network) setupNetNS(context.Context, string, netip.Addr) error { return errNoNetNS }

func (n *Network) teardownNetNS(string) error { return errNoNetNS }

func (n *Network) removeBridge() (bool, error) { return false, nil }
