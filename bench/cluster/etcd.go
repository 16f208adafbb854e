package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/berth-project/berth/bench/proc"
)

// Etcd is a standalone etcd process on loopback: the storage floor berth's
// API server is compared with.
type Etcd struct {
	env     *Env
	dir     string
	client  string
	peer    string
	Proc    *proc.Proc
	Client  *clientv3.Client
	started time.Time
}

// NewEtcd prepares an etcd with a fresh data dir; Start runs it.
func (e *Env) NewEtcd() (*Etcd, error) {
	dir, err := os.MkdirTemp(e.Dir, "etcd-")
	if err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	cp, err := FreePort()
	if err != nil {
		return nil, err
	}
	pp, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &Etcd{env: e, dir: dir, client: fmt.Sprintf("http://127.0.0.1:%d", cp), peer: fmt.Sprintf("http://127.0.0.1:%d", pp)}, nil
}

// Start runs etcd and returns the time from the exec to the first answered
// read.
func (e *Etcd) Start(ctx context.Context) (time.Duration, error) {
	cmd := exec.Command(e.env.Etcd, "--name", "bench", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.client, "--advertise-client-urls", e.client,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "bench="+e.peer, "--log-level", "error")
	p, err := e.env.Procs.Start("etcd", cmd)
	if err != nil {
		return 0, err
	}
	e.Proc = p
	if e.Client == nil {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.client}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return 0, fmt.Errorf("etcd client: %w", err)
		}
		e.Client = c
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := e.Client.Get(rctx, "/bench-probe")
		rcancel()
		if err == nil {
			return time.Since(p.Started), nil
		}
		select {
		case <-p.Done():
			return 0, fmt.Errorf("etcd exited: %v\n%s", p.Err(), p.Tail(20))
		case <-ctx.Done():
			return 0, fmt.Errorf("etcd not answering: %w\n%s", err, p.Tail(20))
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Stop stops etcd (SIGTERM, then SIGKILL after 10s).
func (e *Etcd) Stop() {
	if e.Proc != nil {
		e.Proc.Stop(syscall.SIGTERM, 10*time.Second)
	}
}

// Close stops etcd and closes the client.
func (e *Etcd) Close() {
	e.Stop()
	if e.Client != nil {
		_ = e.Client.Close()
		e.Client = nil
	}
}
