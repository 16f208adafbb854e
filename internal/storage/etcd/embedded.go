package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Embedded is an etcd server running inside the berth process.
type Embedded struct {
	etcd   *embed.Etcd
	client *clientv3.Client
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// Dir holds etcd's data; created if missing.
	Dir string
	// ClientURL, when set, also serves etcd's client API there (for
	// etcdctl and debugging). Empty keeps etcd reachable only in-process.
	ClientURL string
}

// StartEmbedded starts a single-member etcd in cfg.Dir and waits until it
// serves. Its client talks to the server in-process, with no network hop.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = "berth"
	ec.Dir = cfg.Dir
	// etcd needs a peer and a client URL even when no one dials them; unix
	// sockets inside the data dir avoid claiming TCP ports on the host.
	peer, err := url.Parse("unix://" + filepath.Join(cfg.Dir, "peer.sock"))
	if err != nil {
		return nil, err
	}
	client, err := url.Parse("unix://" + filepath.Join(cfg.Dir, "client.sock"))
	if err != nil {
		return nil, err
	}
	if cfg.ClientURL != "" {
		if client, err = url.Parse(cfg.ClientURL); err != nil {
			return nil, fmt.Errorf("parse etcd client URL %q: %w", cfg.ClientURL, err)
		}
	}
	for _, p := range []string{"peer.sock", "client.sock"} {
		_ = os.Remove(filepath.Join(cfg.Dir, p)) // stale sockets from a killed run
	}
	ec.ListenPeerUrls = []url.URL{*peer}
	ec.AdvertisePeerUrls = []url.URL{*peer}
	ec.ListenClientUrls = []url.URL{*client}
	ec.AdvertiseClientUrls = []url.URL{*client}
	ec.InitialCluster = ec.Name + "=" + peer.String()
	ec.LogLevel = "error"
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "0" // berth's own compactor runs, as for external etcd
	ec.WatchProgressNotifyInterval = 5 * time.Second
	ec.QuotaBackendBytes = 8 << 30
	// The snapshot and WAL fsync policy stay at etcd's defaults: an acknowledged
	// write is on disk.
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within 60s", cfg.Dir)
	}
	return &Embedded{etcd: e, client: v3client.New(e.Server)}, nil
}

// Client returns an in-process client of the embedded server.
func (e *Embedded) Client() *clientv3.Client { return e.client }

// Close stops the server; acknowledged writes are already durable.
func (e *Embedded) Close() {
	_ = e.client.Close()
	e.etcd.Close()
}

// ExternalConfig says how to reach an external etcd cluster.
type ExternalConfig struct {
	Endpoints []string
	// TLS is used when any endpoint is https; nil means the system roots.
	TLS *tls.Config
}

// Dial connects to an external etcd cluster and checks that it answers.
func Dial(ctx context.Context, cfg ExternalConfig, log *slog.Logger) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("no etcd endpoints given")
	}
	var tlsCfg *tls.Config
	for _, ep := range cfg.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("etcd endpoint %q is not a URL like http://127.0.0.1:2379", ep)
		}
		if strings.HasPrefix(ep, "https://") {
			tlsCfg = cfg.TLS
			if tlsCfg == nil {
				tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Status(cctx, cfg.Endpoints[0]); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("etcd at %v does not answer: %w", cfg.Endpoints, err)
	}
	if log != nil {
		log.Info("connected to external etcd", "endpoints", cfg.Endpoints)
	}
	return c, nil
}
