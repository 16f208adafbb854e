package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// profiler records CPU profiles of a process with perf(1) while a phase
// runs, for the analysis of missed targets (-profile DIR). berth's API
// server has no pprof endpoint, so the profile is taken from outside.
type profiler struct {
	dir string
	r   *runner
}

// during runs fn while perf samples pid, then writes name.perf.data and a
// flat report name.txt (top symbols) into the profile directory.
func (p *profiler) during(ctx context.Context, name string, pid int, fn func()) {
	if p == nil || p.dir == "" || pid == 0 {
		fn()
		return
	}
	data := filepath.Join(p.dir, name+".perf.data")
	rec, err := p.r.env.Procs.Start("perf-"+name, exec.Command("perf", "record", "-F", "1999", "-g", "-p", fmt.Sprint(pid), "-o", data))
	if err != nil {
		p.r.log.Warn("perf record", "err", err)
		fn()
		return
	}
	time.Sleep(300 * time.Millisecond) // let perf attach
	fn()
	rec.Stop(syscall.SIGINT, 20*time.Second)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(rctx, "perf", "report", "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.7", "--sort", "dso,symbol", "-i", data).CombinedOutput()
	if err != nil {
		p.r.log.Warn("perf report", "err", err, "out", string(out))
		return
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") && !strings.Contains(l, "Samples") && !strings.Contains(l, "Overhead") {
			continue
		}
		keep = append(keep, l)
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+".txt"), []byte(strings.Join(keep, "\n")), 0o644); err != nil {
		p.r.log.Warn("write profile", "err", err)
	}
}
