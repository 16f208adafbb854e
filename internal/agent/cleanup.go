package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/agent/runtime"
)

// CleanupResult says what Cleanup removed.
type CleanupResult struct {
	Containers  int
	Attachments int
	// Bridge names the netns-mode host bridge it deleted, or is "".
	Bridge string
}

// Cleanup stops every container and tears down every pod network attachment
// recorded under stateDir (the agent's StateDir), for a machine that should
// run no Pods any more once berth has stopped: the agent leaves pods running
// on purpose, so that the next agent adopts them. berthPath is the berth
// binary (the runtime's shim) and bridge the netns-mode bridge's name (""
// for the default), which goes too once no pod is on it. The agent must not
// be running.
func Cleanup(ctx context.Context, stateDir, berthPath, bridge string, log *slog.Logger) (CleanupResult, error) {
	var res CleanupResult
	if log == nil {
		log = slog.Default()
	}
	var errs []error
	if _, err := os.Stat(filepath.Join(stateDir, "containers")); err == nil {
		rt, err := runtime.New(runtime.Config{StateDir: filepath.Join(stateDir, "containers"), ShimPath: berthPath, ShimArgs: []string{ShimSubcommand}, Logger: log})
		if err != nil {
			return res, err
		}
		states, err := rt.List()
		if err != nil {
			return res, err
		}
		for _, st := range states {
			if st.Running {
				_ = rt.Signal(st.ID, syscall.SIGKILL)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, werr := rt.Wait(wctx, st.ID)
				cancel()
				if werr != nil {
					errs = append(errs, fmt.Errorf("container %s: %w", st.ID, werr))
					continue
				}
			}
			if err := rt.Remove(st.ID); err != nil {
				errs = append(errs, fmt.Errorf("remove container %s: %w", st.ID, err))
				continue
			}
			res.Containers++
		}
	}
	for _, mode := range []string{network.ModeNetNS, network.ModeLoopback} {
		if _, err := os.Stat(filepath.Join(stateDir, "network", mode)); err != nil {
			continue
		}
		n, err := network.New(network.Config{Mode: mode, StateDir: filepath.Join(stateDir, "network"), BridgeName: bridge, Logger: log})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s network: %w", mode, err))
			continue
		}
		atts, listErr := n.List()
		if listErr != nil {
			errs = append(errs, listErr)
		}
		torn := 0
		for _, a := range atts {
			if err := n.Teardown(ctx, a.PodUID); err != nil {
				errs = append(errs, fmt.Errorf("tear down pod %s: %w", a.PodUID, err))
				continue
			}
			torn++
		}
		res.Attachments += torn
		// With every pod network gone, the bridge goes too (if no other
		// berth's pods are on it).
		if listErr == nil && torn == len(atts) {
			removed, err := n.RemoveBridge()
			if err != nil {
				errs = append(errs, err)
			}
			if removed {
				res.Bridge = cmp.Or(bridge, network.DefaultBridgeName)
			}
		}
		_ = n.Close()
	}
	return res, errors.Join(errs...)
}
