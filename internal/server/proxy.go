package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/berth-project/berth/internal/proxy"
	"github.com/berth-project/berth/internal/proxy/nftables"
	"github.com/berth-project/berth/internal/proxy/userspace"
	"github.com/berth-project/berth/internal/proxy/vip"
)

// startProxy runs the Service proxy (--proxy-mode) as an API client.
func startProxy(g *group, cfg Config, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) error {
	switch cfg.ProxyMode {
	case "nftables":
		p, err := nftables.New(nftables.Config{Client: client, NodeName: cfg.NodeName, NodePortAddresses: cfg.NodePortAddresses, Logger: log})
		if err != nil {
			return fmt.Errorf("--proxy-mode=nftables: %w", err)
		}
		g.Go("proxy", p.Run)
		return nil
	case "userspace":
		// A table left by a crashed nftables run would DNAT ahead of the
		// userspace proxy.
		if removed, err := nftables.CleanupLeftovers(""); removed {
			log.Info("removed a leftover nftables table of berth")
		} else if err != nil && !errors.Is(err, os.ErrPermission) {
			log.Debug("nftables leftover check", "err", err)
		}
	default:
		return fmt.Errorf("--proxy-mode %q: the supported modes are userspace (default) and nftables", cfg.ProxyMode)
	}
	var addrs proxy.AddressManager = vip.Loopback{}
	var nl *vip.Netlink
	if !allLoopback(cfg.ServiceCIDR, cfg.LBPool) {
		var err error
		if nl, err = vip.NewNetlink(vip.NetlinkConfig{Logger: log}); err != nil {
			return fmt.Errorf("service address device: %w (run as root, or use --pod-network=loopback for 127.x service addresses)", err)
		}
		addrs = nl
	}
	p, err := userspace.New(userspace.Config{
		Client: client, NodeName: cfg.NodeName, NodePortAddresses: cfg.NodePortAddresses,
		Addresses: addrs, Registerer: reg, Logger: log,
	})
	if err != nil {
		if nl != nil {
			_ = nl.Close()
		}
		return err
	}
	g.Go("proxy", func(ctx context.Context) error {
		err := p.Run(ctx)
		if nl != nil {
			_ = nl.Close()
		}
		return err
	})
	return nil
}

// allLoopback says whether service and load-balancer addresses all fall in
// 127.0.0.0/8, which needs no interface. Each argument is a comma-separated
// list of CIDRs, addresses or start-end ranges.
func allLoopback(lists ...string) bool {
	lo := netip.MustParsePrefix("127.0.0.0/8")
	for _, list := range lists {
		for _, entry := range strings.Split(list, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			for _, part := range strings.Split(entry, "-") {
				part, _, _ = strings.Cut(part, "/")
				a, err := netip.ParseAddr(strings.TrimSpace(part))
				if err != nil || !lo.Contains(a) {
					return false
				}
			}
			if p, err := netip.ParsePrefix(entry); err == nil && p.Bits() < 8 {
				return false
			}
		}
	}
	return true
}
