package runtime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/agent/logs"
)

func killPID(pid int) { unix.Kill(pid, unix.SIGKILL) }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs processes as other users and in network namespaces")
	}
}

type fixture struct {
	t        *testing.T
	rt       *Runtime
	stateDir string
	logDir   string
	mark     string // marker value in every workload's environment
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(testRoot, "t-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last, after the containers are gone.
	t.Cleanup(func() { os.RemoveAll(base) })
	f := &fixture{t: t, stateDir: filepath.Join(base, "state"), logDir: filepath.Join(base, "logs"), mark: base}
	f.rt, err = New(Config{StateDir: f.stateDir, ShimPath: exe, ShimArgs: []string{"__shim"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := waitNoLeftovers(f.mark, 10*time.Second); len(left) > 0 {
			t.Errorf("processes left behind: %v", left)
			for _, p := range left {
				killPID(p)
			}
		}
	})
	return f
}

func (f *fixture) spec(id string, argv ...string) ContainerSpec {
	return ContainerSpec{
		ID:            id,
		PodUID:        "uid-1",
		PodNamespace:  "default",
		PodName:       "demo",
		ContainerName: id,
		Argv:          argv,
		Env:           []string{markerKey + "=" + f.mark, "PATH=" + DefaultPath},
		LogPath:       filepath.Join(f.logDir, id, "0.log"),
	}
}

func shArgv(script string) []string { return []string{"/bin/sh", "-c", script} }

// start starts spec and makes sure the container is gone at the end.
func (f *fixture) start(spec ContainerSpec) State {
	f.t.Helper()
	st, err := f.rt.Start(context.Background(), spec)
	if err != nil {
		f.t.Fatalf("Start: %v", err)
	}
	f.t.Cleanup(func() {
		f.rt.Signal(spec.ID, syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.rt.Wait(ctx, spec.ID)
		if err := f.rt.Remove(spec.ID); err != nil {
			f.t.Errorf("Remove: %v", err)
		}
	})
	return st
}

func (f *fixture) wait(id string) State {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := f.rt.Wait(ctx, id)
	if err != nil {
		f.t.Fatalf("Wait(%s): %v", id, err)
	}
	if st.Running {
		f.t.Fatalf("Wait(%s) returned a running container", id)
	}
	return st
}

// readLog returns the container's messages per stream, checking that every
// line of the file is a CRI record.
func readLog(t *testing.T, path string) map[logs.Stream][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) (.*)$`)
	out := map[logs.Stream][]string{}
	// Only complete lines: the shim may be in the middle of writing one.
	complete := string(data[:bytes.LastIndexByte(data, '\n')+1])
	for _, line := range strings.Split(strings.TrimSuffix(complete, "\n"), "\n") {
		if line == "" {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a CRI log record: %q", line)
		}
		out[logs.Stream(m[1])] = append(out[logs.Stream(m[1])], m[3])
	}
	return out
}

// waitLogLines waits until the container log holds n stdout lines.
func waitLogLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil && len(readLog(t, path)[logs.Stdout]) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d lines in %s", n, path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && bytes.HasSuffix(data, []byte("\n")) {
			return strings.TrimSpace(string(data))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gone(pid int, ticks uint64) bool { return !alive(pid, ticks) }

func TestStartRunsAndRecordsExit(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("exit3", shArgv("echo out1; echo err1 >&2; echo out2; exit 3")...)
	before := time.Now()
	st := f.start(spec)
	after := time.Now()
	if st.PID <= 0 || st.StartedAt.Before(before) || st.StartedAt.After(after) {
		t.Errorf("Start = pid %d started %v, want pid > 0 started within [%v, %v]", st.PID, st.StartedAt, before, after)
	}
	if st.Spec.PodName != "demo" || st.ID != "exit3" {
		t.Errorf("Start state has spec %+v", st.Spec)
	}
	end := f.wait("exit3")
	if end.ExitCode != 3 || end.Signal != "" || end.Lost || end.Error != "" {
		t.Errorf("exit = %+v, want code 3", end)
	}
	if end.PID != st.PID || end.FinishedAt.Before(end.StartedAt) {
		t.Errorf("exit state pid %d finished %v, start pid %d started %v", end.PID, end.FinishedAt, st.PID, end.StartedAt)
	}
	// The exit is recorded after the logs are flushed.
	got := readLog(t, spec.LogPath)
	if want := []string{"out1", "out2"}; fmt.Sprint(got[logs.Stdout]) != fmt.Sprint(want) {
		t.Errorf("stdout = %q, want %q", got[logs.Stdout], want)
	}
	if want := []string{"err1"}; fmt.Sprint(got[logs.Stderr]) != fmt.Sprint(want) {
		t.Errorf("stderr = %q, want %q", got[logs.Stderr], want)
	}
	if err := f.rt.Remove("exit3"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rt.State("exit3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State after Remove: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(spec.LogPath); err != nil {
		t.Errorf("Remove deleted the log: %v", err)
	}
}

func TestRunningProcessIdentity(t *testing.T) {
	f := newFixture(t)
	st := f.start(f.spec("sleeper", "sleep", "60"))
	if !st.Running {
		t.Fatalf("not running: %+v", st)
	}
	ps, err := readProcStat(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	var start startRecord
	var shim shimRecord
	dir := filepath.Join(f.stateDir, "sleeper")
	readJSON(dir, startFile, &start)
	readJSON(dir, shimFile, &shim)
	if ps.StartTicks != start.StartTicks {
		t.Errorf("recorded start ticks %d, /proc says %d", start.StartTicks, ps.StartTicks)
	}
	if ps.PGRP != st.PID {
		t.Errorf("process group %d, want its own (%d)", ps.PGRP, st.PID)
	}
	if ps.PPID != shim.PID {
		t.Errorf("parent %d, want the shim %d", ps.PPID, shim.PID)
	}
	// The shim is in a session of its own, so that nothing aimed at berth's
	// process group or terminal reaches it (it survives berth: see
	// TestAdoptAfterBerthKilled).
	if sid, err := unix.Getsid(shim.PID); err != nil || sid != shim.PID {
		t.Errorf("the shim's session is %d (%v), want its own (%d)", sid, err, shim.PID)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	if string(cmdline) != "sleep\x0060\x00" {
		t.Errorf("cmdline %q", cmdline)
	}
	// Running containers cannot be removed.
	if err := f.rt.Remove("sleeper"); !errors.Is(err, ErrRunning) {
		t.Errorf("Remove running: %v, want ErrRunning", err)
	}
	if _, err := f.rt.Start(context.Background(), f.spec("sleeper", "true")); !errors.Is(err, ErrExists) {
		t.Errorf("second Start with the same ID: %v, want ErrExists", err)
	}
	if err := f.rt.Signal("sleeper", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	end := f.wait("sleeper")
	if end.ExitCode != 137 || end.Signal != "SIGKILL" {
		t.Errorf("exit = %+v, want 137 SIGKILL", end)
	}
	if !gone(st.PID, start.StartTicks) || !gone(shim.PID, shim.StartTicks) {
		t.Error("process or shim still alive after the exit was recorded")
	}
	// Signalling an exited container is fine.
	if err := f.rt.Signal("sleeper", syscall.SIGTERM); err != nil {
		t.Errorf("Signal after exit: %v", err)
	}
}

func TestSignalTermRecorded(t *testing.T) {
	f := newFixture(t)
	f.start(f.spec("term", "sleep", "60"))
	if err := f.rt.Signal("term", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if end := f.wait("term"); end.ExitCode != 143 || end.Signal != "SIGTERM" {
		t.Errorf("exit = %+v, want 143 SIGTERM", end)
	}
}

func TestSignalReachesGrandchild(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	got, ready := filepath.Join(dir, "got"), filepath.Join(dir, "ready")
	// main -> child -> grandchild; each waits for the one below, so the
	// grandchild's trap runs before anything exits.
	os.WriteFile(filepath.Join(dir, "grandchild.sh"), []byte(fmt.Sprintf(
		"trap 'echo term > %s; exit 0' TERM\necho ready > %s\nwhile :; do sleep 0.05; done\n", got, ready)), 0o644)
	os.WriteFile(filepath.Join(dir, "child.sh"), []byte(fmt.Sprintf(
		"trap 'wait; exit 0' TERM\nsh %s/grandchild.sh &\nwait\n", dir)), 0o644)
	os.WriteFile(filepath.Join(dir, "main.sh"), []byte(fmt.Sprintf(
		"trap 'wait; exit 3' TERM\nsh %s/child.sh &\nwait\n", dir)), 0o644)
	f.start(f.spec("tree", "sh", filepath.Join(dir, "main.sh")))
	waitFile(t, ready)
	if err := f.rt.Signal("tree", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	end := f.wait("tree")
	if end.ExitCode != 3 {
		t.Errorf("exit = %+v, want 3 from main's trap", end)
	}
	if data, _ := os.ReadFile(got); strings.TrimSpace(string(data)) != "term" {
		t.Errorf("grandchild did not record SIGTERM: %q", data)
	}
}

func TestLeftoversDieWithMainProcess(t *testing.T) {
	f := newFixture(t)
	pids := filepath.Join(t.TempDir(), "pids")
	// One child stays in the group, one escapes into a new session; main
	// exits only once the escape has happened (field 6 of stat is the session).
	f.start(f.spec("leftovers", shArgv(fmt.Sprintf(`sleep 60 & a=$!
setsid sleep 61 & b=$!
while [ "$(cut -d' ' -f6 /proc/$b/stat)" = "$(cut -d' ' -f6 /proc/$$/stat)" ]; do sleep 0.01; done
echo $a $b > %s
exit 0`, pids))...))
	end := f.wait("leftovers")
	if end.ExitCode != 0 {
		t.Fatalf("exit = %+v", end)
	}
	for _, s := range strings.Fields(waitFile(t, pids)) {
		pid, _ := strconv.Atoi(s)
		if st, err := readProcStat(pid); err == nil && st.State != 'Z' {
			t.Errorf("pid %d survived the container's main process", pid)
		}
	}
}

func TestAdoptAfterBerthKilled(t *testing.T) {
	f := newFixture(t)
	goFile := filepath.Join(t.TempDir(), "go")
	logPath := filepath.Join(f.logDir, "adopt", "0.log")
	script := fmt.Sprintf("echo before; while [ ! -e %s ]; do sleep 0.05; done; echo after; echo after-err >&2; exit 7", goFile)
	exe, _ := os.Executable()
	starter := exec.Command(exe, "__starter", f.stateDir, "adopt", logPath, script)
	starter.Env = append(os.Environ(), markerKey+"="+f.mark)
	stdin, _ := starter.StdinPipe()
	defer stdin.Close()
	stdout, _ := starter.StdoutPipe()
	starter.Stderr = os.Stderr
	if err := starter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.rt.Signal("adopt", syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.rt.Wait(ctx, "adopt")
		f.rt.Remove("adopt")
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		starter.Process.Kill()
		starter.Wait()
		t.Fatalf("starter did not report: %v", err)
	}
	var first State
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		t.Fatalf("starter said %q: %v", line, err)
	}
	// kill -9 "berth".
	starter.Process.Kill()
	starter.Wait()

	// A new runtime over the same state adopts the running container.
	rt2, err := New(Config{StateDir: f.stateDir, ShimPath: exe, ShimArgs: []string{"__shim"}})
	if err != nil {
		t.Fatal(err)
	}
	f.rt = rt2
	list, err := rt2.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "adopt" || !list[0].Running || list[0].PID != first.PID || !list[0].StartedAt.Equal(first.StartedAt) {
		t.Fatalf("List after restart = %+v, want running adopt with pid %d", list, first.PID)
	}
	// The workload writes after berth died: no SIGPIPE, and the shim logs it.
	os.WriteFile(goFile, nil, 0o644)
	end := f.wait("adopt")
	if end.ExitCode != 7 || end.PID != first.PID {
		t.Errorf("adopted exit = %+v, want 7 from pid %d", end, first.PID)
	}
	got := readLog(t, logPath)
	if fmt.Sprint(got[logs.Stdout]) != "[before after]" || fmt.Sprint(got[logs.Stderr]) != "[after-err]" {
		t.Errorf("log = %v", got)
	}
}

func TestStaleStateIsNotFooledByPIDReuse(t *testing.T) {
	f := newFixture(t)
	// A live process that is not ours, in a group of its own, as a
	// container's would be.
	stranger := exec.Command("sleep", "60")
	stranger.Env = []string{markerKey + "=" + f.mark}
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer stranger.Wait()
	defer stranger.Process.Kill()
	ps, err := readProcStat(stranger.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pid := stranger.Process.Pid
	for _, tc := range []struct {
		name   string
		ticks  uint64
		bootID string
	}{
		// Same boot, the pid reused by a process that started later.
		{"reused pid", ps.StartTicks + 1, bootID()},
		// An earlier boot, where even the start time may match.
		{"earlier boot", ps.StartTicks, "00000000-earlier-boot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "stale-" + strings.ReplaceAll(tc.name, " ", "-")
			dir := filepath.Join(f.stateDir, id)
			os.MkdirAll(dir, 0o700)
			writeJSON(dir, specFile, f.spec(id, "sleep", "60"), true)
			writeJSON(dir, shimFile, shimRecord{PID: pid, StartTicks: tc.ticks, BootID: tc.bootID}, true)
			writeJSON(dir, startFile, startRecord{PID: pid, StartTicks: tc.ticks, BootID: tc.bootID, StartedAt: time.Now().Add(-time.Hour)}, true)

			st, err := f.rt.State(id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Running || !st.Lost || st.ExitCode != LostExitCode || st.Error == "" {
				t.Errorf("stale state = %+v, want lost", st)
			}
			if err := f.rt.Signal(id, syscall.SIGKILL); err != nil {
				t.Errorf("Signal: %v", err)
			}
			if _, err := f.rt.Wait(context.Background(), id); err != nil {
				t.Errorf("Wait: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			if !alive(pid, ps.StartTicks) {
				t.Fatal("the runtime killed a process that merely reused a recorded pid")
			}
			if err := f.rt.Remove(id); err != nil {
				t.Errorf("Remove: %v", err)
			}
		})
	}
}

func TestShimKilledMarksContainerLost(t *testing.T) {
	f := newFixture(t)
	bg := filepath.Join(t.TempDir(), "bg")
	st := f.start(f.spec("orphan", shArgv(fmt.Sprintf("sleep 60 & echo $! > %s; wait", bg))...))
	bgPID, _ := strconv.Atoi(waitFile(t, bg))
	bgStat, err := readProcStat(bgPID)
	if err != nil {
		t.Fatal(err)
	}
	var shim shimRecord
	readJSON(filepath.Join(f.stateDir, "orphan"), shimFile, &shim)
	if err := unix.Kill(shim.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	end := f.wait("orphan")
	if !end.Lost || end.ExitCode != LostExitCode || end.Error == "" {
		t.Errorf("after the shim died: %+v, want lost", end)
	}
	var start startRecord
	readJSON(filepath.Join(f.stateDir, "orphan"), startFile, &start)
	deadline := time.Now().Add(10 * time.Second)
	for alive(st.PID, start.StartTicks) || alive(bgPID, bgStat.StartTicks) {
		if time.Now().After(deadline) {
			t.Fatal("workload or its child outlived the shim")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Later observers agree.
	again, _ := f.rt.State("orphan")
	if !again.Lost || !again.FinishedAt.Equal(end.FinishedAt) {
		t.Errorf("second State = %+v", again)
	}
}

func TestStartErrors(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name   string
		mutate func(*ContainerSpec)
		is     error
		text   string
	}{
		{"missing in PATH", func(s *ContainerSpec) { s.Argv = []string{"berth-no-such-binary"} }, ErrExecutableNotFound, "berth-no-such-binary"},
		{"missing absolute", func(s *ContainerSpec) { s.Argv = []string{"/nonexistent/bin/x"} }, ErrExecutableNotFound, "/nonexistent/bin/x"},
		{"PATH from env", func(s *ContainerSpec) { s.Argv = []string{"sh"}; s.Env = []string{"PATH=" + dir} }, ErrExecutableNotFound, "sh"},
		{"not executable", func(s *ContainerSpec) { s.Argv = []string{plain} }, fs.ErrPermission, "plain"},
		{"missing interpreter", func(s *ContainerSpec) {
			p := filepath.Join(dir, "badshebang")
			os.WriteFile(p, []byte("#!/nonexistent/interp\n"), 0o755)
			s.Argv = []string{p}
		}, ErrExecutableNotFound, "badshebang"},
		{"missing dir", func(s *ContainerSpec) { s.Dir = "/nonexistent" }, fs.ErrNotExist, "working directory"},
		{"missing netns", func(s *ContainerSpec) { s.NetNSPath = "/nonexistent/netns" }, fs.ErrNotExist, "network namespace"},
		{"bad id", func(s *ContainerSpec) { s.ID = "../x" }, nil, "invalid container id"},
		{"empty argv", func(s *ContainerSpec) { s.Argv = nil }, nil, "empty command"},
		{"bad env", func(s *ContainerSpec) { s.Env = []string{"NOEQUALS"} }, nil, "KEY=VALUE"},
		{"relative dir", func(s *ContainerSpec) { s.Dir = "tmp" }, nil, "not absolute"},
		{"negative uid", func(s *ContainerSpec) { v := int64(-1); s.UID = &v }, nil, "invalid uid"},
		{"one log file", func(s *ContainerSpec) { s.LogMaxBytes = 10; s.LogMaxFiles = 1 }, nil, "max files"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := f.spec(fmt.Sprintf("err%d", i), "true")
			tt.mutate(&spec)
			_, err := f.rt.Start(context.Background(), spec)
			if err == nil {
				f.rt.Remove(spec.ID)
				t.Fatal("Start succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %q, want it to mention %q", err, tt.text)
			}
			if list, _ := f.rt.List(); len(list) != 0 {
				t.Errorf("failed Start left state: %+v", list)
			}
		})
	}
}

// The shim's own check, after Start's: an executable that disappears
// between the two is still a typed error from Start.
func TestShimReportsStartFailure(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	os.WriteFile(prog, []byte("#!/nonexistent/interp\n"), 0o755)
	spec := f.spec("shimfail", prog)
	_, err := f.rt.Start(context.Background(), spec)
	if !errors.Is(err, ErrExecutableNotFound) {
		t.Fatalf("err = %v, want ErrExecutableNotFound from the shim", err)
	}
}

func TestStartCanceledLeavesNothing(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.rt.Start(ctx, f.spec("canceled", "sleep", "60"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := f.rt.State("canceled"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State: %v, want ErrNotFound", err)
	}
	// The fixture's cleanup checks that no process is left.
}

func TestPathLookupUsesContainerEnv(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("#!/bin/sh\necho hello from $0\n"), 0o755)
	spec := f.spec("path", "hello")
	spec.Env = []string{markerKey + "=" + f.mark, "PATH=/nonexistent:" + dir}
	f.start(spec)
	if end := f.wait("path"); end.ExitCode != 0 {
		t.Fatalf("exit %+v", end)
	}
	if got := readLog(t, spec.LogPath)[logs.Stdout]; len(got) != 1 || got[0] != "hello from "+filepath.Join(dir, "hello") {
		t.Errorf("stdout = %q", got)
	}

	// Without PATH in the env, the default is used and given to the process.
	spec2 := f.spec("defpath", shArgv(`echo "$PATH"`)...)
	spec2.Env = []string{markerKey + "=" + f.mark}
	f.start(spec2)
	f.wait("defpath")
	if got := readLog(t, spec2.LogPath)[logs.Stdout]; len(got) != 1 || got[0] != DefaultPath {
		t.Errorf("PATH = %q, want %q", got, DefaultPath)
	}
}

func TestUIDGID(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	uid, gid := int64(65534), int64(65533)
	spec := f.spec("ids", shArgv("id -u; id -g; id -G; exec sleep 60")...)
	spec.UID, spec.GID = &uid, &gid
	st := f.start(spec)
	waitLogLines(t, spec.LogPath, 3)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s+65534`).Match(status) || !regexp.MustCompile(`(?m)^Gid:\s+65533\s+65533`).Match(status) {
		t.Errorf("process status:\n%s", status)
	}
	f.rt.Signal("ids", syscall.SIGKILL)
	f.wait("ids")
	if got := readLog(t, spec.LogPath)[logs.Stdout]; fmt.Sprint(got) != "[65534 65533 65533]" {
		t.Errorf("id output %q, want uid 65534, gid and only group 65533", got)
	}

	// With only a UID, the primary group comes from /etc/passwd (nobody).
	spec2 := f.spec("uidonly", shArgv("id -g")...)
	spec2.UID = &uid
	f.start(spec2)
	f.wait("uidonly")
	if got := readLog(t, spec2.LogPath)[logs.Stdout]; fmt.Sprint(got) != fmt.Sprint([]string{strconv.Itoa(int(primaryGroup(uid)))}) {
		t.Errorf("gid %q, want %d", got, primaryGroup(uid))
	}
}

const netnsPrefix = "berth-rt-test-"

// newNetns creates a named network namespace and deletes it at cleanup.
func newNetns(t *testing.T) (path string, ino uint64) {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := netnsPrefix + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete: %v: %s", err, out)
		}
	})
	path = "/var/run/netns/" + name
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return path, st.Ino
}

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNetNS(t *testing.T) {
	f := newFixture(t)
	nsPath, nsIno := newNetns(t)
	hostIno := netnsInode(t, "/proc/thread-self/ns/net")
	if hostIno == nsIno {
		t.Fatal("test netns is the host's")
	}
	spec := f.spec("netns", shArgv("cat /proc/net/dev; exec sleep 60")...)
	spec.NetNSPath = nsPath
	st := f.start(spec)
	waitLogLines(t, spec.LogPath, 3) // /proc/net/dev has two header lines, then lo
	if got := netnsInode(t, fmt.Sprintf("/proc/%d/ns/net", st.PID)); got != nsIno {
		t.Errorf("process netns inode %d, want the pod's %d (host %d)", got, nsIno, hostIno)
	}
	f.rt.Signal("netns", syscall.SIGKILL)
	f.wait("netns")
	// A fresh namespace has only lo.
	var ifaces []string
	for _, l := range readLog(t, spec.LogPath)[logs.Stdout][2:] {
		name, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		ifaces = append(ifaces, name)
	}
	if fmt.Sprint(ifaces) != "[lo]" {
		t.Errorf("interfaces seen = %v, want [lo]", ifaces)
	}
	// The host-namespace default still works side by side.
	host := f.start(f.spec("hostns", "sleep", "60"))
	if got := netnsInode(t, fmt.Sprintf("/proc/%d/ns/net", host.PID)); got != hostIno {
		t.Errorf("host container in netns %d, want host %d", got, hostIno)
	}
}

func TestWaitPollingFallback(t *testing.T) {
	usePidfd = false
	defer func() { usePidfd = true }()
	f := newFixture(t)
	f.start(f.spec("poll", shArgv("sleep 0.3; exit 5")...))
	if end := f.wait("poll"); end.ExitCode != 5 {
		t.Errorf("exit %+v", end)
	}
}

func TestWaitHonorsContext(t *testing.T) {
	f := newFixture(t)
	f.start(f.spec("waitctx", "sleep", "60"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := f.rt.Wait(ctx, "waitctx")
	if !errors.Is(err, context.DeadlineExceeded) || !st.Running {
		t.Errorf("Wait = %+v, %v; want running and DeadlineExceeded", st, err)
	}
	if _, err := f.rt.Wait(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait unknown: %v", err)
	}
}

func TestLogRotationThroughShim(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("rotate", shArgv("i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done")...)
	spec.LogMaxBytes, spec.LogMaxFiles = 1000, 3
	f.start(spec)
	f.wait("rotate")
	matches, _ := filepath.Glob(spec.LogPath + ".*")
	if len(matches) != 2 {
		t.Errorf("rotated files = %v, want 2", matches)
	}
	var out bytes.Buffer
	two := int64(2)
	if err := logs.ReadLogs(context.Background(), spec.LogPath, logs.Options{TailLines: &two}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "line-198\nline-199\n" {
		t.Errorf("tail = %q", out.String())
	}
}

func TestListAndCreatedState(t *testing.T) {
	f := newFixture(t)
	f.start(f.spec("b-run", "sleep", "60"))
	f.start(f.spec("a-done", "true"))
	f.wait("a-done")
	// A directory berth made just before dying inside Start.
	dir := filepath.Join(f.stateDir, "c-created")
	os.Mkdir(dir, 0o700)
	writeJSON(dir, specFile, f.spec("c-created", "true"), true)
	// Junk is ignored.
	os.Mkdir(filepath.Join(f.stateDir, "junk"), 0o700)
	os.WriteFile(filepath.Join(f.stateDir, "file"), nil, 0o600)

	list, err := f.rt.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, fmt.Sprintf("%s:%v:%v", s.ID, s.Running, s.PID > 0))
	}
	if want := "[a-done:false:true b-run:true:true c-created:false:false]"; fmt.Sprint(got) != want {
		t.Errorf("List = %v, want %s", got, want)
	}
	if err := f.rt.Signal("c-created", syscall.SIGTERM); err == nil {
		t.Error("Signal of a never-started container succeeded")
	}
	if err := f.rt.Remove("c-created"); err != nil {
		t.Errorf("Remove created: %v", err)
	}
	if err := f.rt.Remove("never-existed"); err != nil {
		t.Errorf("Remove unknown: %v", err)
	}
	if _, err := f.rt.State("bad/id"); err == nil {
		t.Error("State accepted a bad id")
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{ShimPath: "/bin/true"},
		{StateDir: "relative", ShimPath: "/bin/true"},
		{StateDir: "/tmp/x"},
		{StateDir: "/tmp/x", ShimPath: "berth"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestShimMainUsage(t *testing.T) {
	if code := ShimMain(nil); code != 2 {
		t.Errorf("ShimMain(nil) = %d, want 2", code)
	}
	if code := ShimMain([]string{"bogus", "/x"}); code != 2 {
		t.Errorf("ShimMain(bogus) = %d, want 2", code)
	}
}

// waitSpare waits for rt's spare shim other than not.
func waitSpare(t *testing.T, rt *Runtime, not *spare) *spare {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rt.mu.Lock()
		sp := rt.spare
		rt.mu.Unlock()
		if sp != nil && sp != not {
			return sp
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no spare shim started")
	return nil
}

func TestPrestartedShim(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(Config{StateDir: f.stateDir, ShimPath: exe, ShimArgs: []string{"__shim"}, Prestart: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	f.rt = rt
	rt.Warm()

	var prev *spare
	for _, id := range []string{"a", "b"} {
		sp := waitSpare(t, rt, prev)
		prev = sp
		spec := f.spec(id, shArgv("echo hello "+id+"; echo oops >&2; exit 4")...)
		f.start(spec)
		var sh shimRecord
		if ok, err := readJSON(filepath.Join(f.stateDir, id), shimFile, &sh); !ok || err != nil {
			t.Fatalf("%s: shim record: %v %v", id, ok, err)
		}
		if sh.PID != sp.pid {
			t.Errorf("%s ran in shim %d, want the spare %d", id, sh.PID, sp.pid)
		}
		if end := f.wait(id); end.ExitCode != 4 || end.Lost {
			t.Errorf("%s: exit = %+v, want code 4", id, end)
		}
		got := readLog(t, spec.LogPath)
		if fmt.Sprint(got[logs.Stdout]) != "[hello "+id+"]" || fmt.Sprint(got[logs.Stderr]) != "[oops]" {
			t.Errorf("%s: log = %q", id, got)
		}
	}

	// A spare that died is passed over: the start goes the usual way.
	dead := waitSpare(t, rt, prev)
	killPID(dead.pid)
	<-dead.exited
	f.start(f.spec("c", shArgv("exit 5")...))
	if end := f.wait("c"); end.ExitCode != 5 {
		t.Errorf("c after a dead spare: exit = %+v, want code 5", end)
	}

	// Close ends the spare; starts still work.
	last := waitSpare(t, rt, dead)
	rt.Close()
	select {
	case <-last.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the spare shim did not exit after Close")
	}
	f.start(f.spec("d", shArgv("exit 6")...))
	if end := f.wait("d"); end.ExitCode != 6 {
		t.Errorf("d after Close: exit = %+v, want code 6", end)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.spare != nil {
		t.Error("a spare was started after Close")
	}
}
