package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/agent/runtime"
)

// orphanGrace is how long an orphaned container (its Pod is gone from the
// API, e.g. force-deleted while the agent was down) gets between SIGTERM
// and SIGKILL.
const orphanGrace = 2 * time.Second

// housekeep removes everything that belongs to no Pod of this node:
// containers (stopped first), network attachments and log directories.
// What it lists is read before the set of live Pods, so that a Pod
// created meanwhile is never mistaken for an orphan.
func (a *Agent) housekeep(ctx context.Context) {
	states, err := a.rt.List()
	if err != nil {
		a.log.Error("list containers", "err", err)
	}
	atts, err := a.net.List()
	if err != nil {
		a.log.Error("list pod networks", "err", err)
	}
	entries, _ := os.ReadDir(a.logDir)
	live := a.liveUIDs()

	orphans := map[string][]runtime.State{}
	for _, st := range states {
		if !live[types.UID(st.Spec.PodUID)] {
			orphans[st.Spec.PodUID] = append(orphans[st.Spec.PodUID], st)
		}
	}
	var wg sync.WaitGroup
	for uid, list := range orphans {
		a.log.Info("removing containers of a pod that is gone", "podUID", uid, "pod", list[0].Spec.PodNamespace+"/"+list[0].Spec.PodName, "containers", len(list))
		for _, st := range list {
			wg.Go(func() { a.removeOrphan(ctx, st) })
		}
	}
	wg.Wait()
	for _, att := range atts {
		if !live[types.UID(att.PodUID)] {
			a.log.Info("removing network of a pod that is gone", "podUID", att.PodUID, "pod", att.Pod, "ip", att.IP)
			if err := a.net.Teardown(ctx, att.PodUID); err != nil {
				a.log.Error("tear down orphaned pod network", "podUID", att.PodUID, "err", err)
			}
		}
	}
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '_')
		if !e.IsDir() || i < 0 || live[types.UID(e.Name()[i+1:])] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(a.logDir, e.Name())); err != nil {
			a.log.Warn("remove logs of a pod that is gone", "dir", e.Name(), "err", err)
		}
	}

	a.mu.Lock()
	for uid, t := range a.finished {
		if time.Since(t) > finishedMemory {
			delete(a.finished, uid)
		}
	}
	a.mu.Unlock()
}

// liveUIDs are the Pods of this node in the API and those a worker still
// handles.
func (a *Agent) liveUIDs() map[types.UID]bool {
	live := map[types.UID]bool{}
	if a.lister != nil {
		pods, _ := a.lister.List(labels.Everything())
		for _, p := range pods {
			if p.Spec.NodeName == a.cfg.NodeName {
				live[p.UID] = true
			}
		}
	}
	a.mu.Lock()
	for uid := range a.workers {
		live[uid] = true
	}
	a.mu.Unlock()
	return live
}

func (a *Agent) removeOrphan(ctx context.Context, st runtime.State) {
	if st.Running {
		a.rt.Signal(st.ID, syscall.SIGTERM)
		wctx, cancel := context.WithTimeout(ctx, orphanGrace)
		_, err := a.rt.Wait(wctx, st.ID)
		cancel()
		if err != nil {
			a.rt.Signal(st.ID, syscall.SIGKILL)
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			a.rt.Wait(wctx, st.ID)
			cancel()
		}
	}
	if err := a.rt.Remove(st.ID); err != nil {
		a.log.Error("remove orphaned container", "container", st.ID, "err", err)
	}
}
