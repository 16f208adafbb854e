package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/bench/report"
)

// machineFacts describes the machine and the binaries under test.
func machineFacts(ctx context.Context, r *runner) []report.Fact {
	var f []report.Fact
	add := func(k, v string) { f = append(f, report.Fact{Name: k, Value: v}) }
	add("CPU", cpuModel())
	add("cores", fmt.Sprintf("%d (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	add("memory", memTotal())
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		add("kernel", unix.ByteSliceToString(u.Sysname[:])+" "+unix.ByteSliceToString(u.Release[:])+" "+unix.ByteSliceToString(u.Machine[:]))
	}
	add("OS", osRelease())
	add("Go (toolchain running the bench)", runtime.Version())
	gov, rev := buildInfo(r.env.Berth)
	if strings.HasPrefix(rev, "not stamped") || rev == "unknown" {
		rev = gitRevision(ctx, r.root)
	}
	add("berth", strings.TrimSpace(output(ctx, r.env.Berth, "version")))
	add("berth built with", gov)
	add("berth commit", rev)
	add("berth binary", r.env.Berth)
	add("kubectl", firstLine(output(ctx, r.env.Kubectl, "version", "--client")))
	if hp, err := exec.LookPath("haproxy"); err == nil {
		add("HAProxy", firstLine(output(ctx, hp, "-v")))
	} else {
		add("HAProxy", "not installed at the start of the run")
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		add("RLIMIT_NOFILE (soft/hard) of the bench", fmt.Sprintf("%d / %d", rl.Cur, rl.Max))
	}
	add("running as", fmt.Sprintf("uid %d", os.Geteuid()))
	add("load average at the start", loadAvg())
	return f
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ") + " (1, 5, 15 min)"
}

func output(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "unavailable (" + err.Error() + ")"
	}
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// buildInfo reads the Go version and VCS stamp of a binary.
func buildInfo(path string) (goVersion, revision string) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown", "unknown"
	}
	rev, modified, when := "", "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " + uncommitted changes"
			}
		case "vcs.time":
			when = " (" + s.Value + ")"
		}
	}
	if rev == "" {
		return bi.GoVersion, "not stamped (built outside git)"
	}
	return bi.GoVersion, rev[:min(12, len(rev))] + when + modified
}

// gitRevision describes the work tree's commit, for binaries built without
// VCS stamping (GOFLAGS=-buildvcs=false). It only reads: no optional locks,
// so the index is not rewritten.
func gitRevision(ctx context.Context, root string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rev, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (not stamped, no git)"
	}
	out := strings.TrimSpace(string(rev)) + " (work tree at run time"
	st, err := exec.CommandContext(ctx, "git", "--no-optional-locks", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		out += fmt.Sprintf(", %d files with uncommitted changes", len(strings.Split(strings.TrimSpace(string(st)), "\n")))
	}
	return out + ")"
}
