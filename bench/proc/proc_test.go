package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartStopAndTail(t *testing.T) {
	g, err := NewGroup(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Start("echo", exec.Command("sh", "-c", "echo one; echo two; exec sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Output(), "two") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.Tail(1); got != "two" {
		t.Errorf("Tail(1) = %q", got)
	}
	if !p.Stop(syscall.SIGTERM, 5*time.Second) {
		t.Error("sh did not stop on SIGTERM")
	}
	b, _ := os.ReadFile(p.LogPath)
	if !strings.Contains(string(b), "one\ntwo\n") {
		t.Errorf("log file holds %q", b)
	}
}

func TestStopAllKillsOrphans(t *testing.T) {
	g, err := NewGroup(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The grandchild leaves the process group (setsid) and outlives its
	// parent: only the subreaper finds it.
	p, err := g.Start("orphaner", exec.Command("sh", "-c", "setsid sleep 60 & echo $! > "+pidFile+"; exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	var orphan int
	deadline := time.Now().Add(5 * time.Second)
	for orphan == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidFile)
		orphan = atoiOr0(strings.TrimSpace(string(b)))
		time.Sleep(10 * time.Millisecond)
	}
	if orphan == 0 {
		t.Fatal("no orphan pid")
	}
	killed := g.StopAll(time.Second)
	if len(killed) != 1 || !strings.Contains(killed[0], "sleep 60") {
		t.Errorf("StopAll killed %q", killed)
	}
	if i, err := Stat(orphan); err == nil && i.State != "Z" {
		t.Errorf("orphan %d still alive: %+v", orphan, i)
	}
}

func atoiOr0(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func TestReadMemAndCPU(t *testing.T) {
	m, err := ReadMem(os.Getpid())
	if err != nil || m.RSS <= 0 || m.Anon <= 0 || m.Threads < 1 || m.RSS < m.Anon {
		t.Fatalf("ReadMem = %+v, %v", m, err)
	}
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if n, err := OpenFDs(os.Getpid()); err != nil || n < 3 {
		t.Fatalf("OpenFDs = %d, %v", n, err)
	}
	if _, err := ReadMem(1 << 30); err == nil {
		t.Error("ReadMem of a missing pid succeeded")
	}
}

func TestFindByEnv(t *testing.T) {
	g, err := NewGroup(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.StopAll(time.Second)
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "BENCH_FIND_ME=yes-42")
	p, err := g.Start("sleeper", cmd)
	if err != nil {
		t.Fatal(err)
	}
	got := FindByEnv("sleep", "BENCH_FIND_ME=yes-42")
	if len(got) != 1 || got[0] != p.Pid() {
		t.Errorf("FindByEnv = %v, want [%d]", got, p.Pid())
	}
	if got := FindByEnv("sleep", "BENCH_FIND_ME=no"); len(got) != 0 {
		t.Errorf("FindByEnv with a wrong value = %v", got)
	}
}
