package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group owns every process a run starts.
type Group struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex // guards procs
	procs []*Proc
}

// NewGroup returns a Group that writes process logs under dir. It makes the
// calling process a child subreaper so that orphaned descendants come back
// to it and can be found by Reap.
func NewGroup(dir string, log *slog.Logger) (*Group, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	return &Group{dir: dir, log: log}, nil
}

// Proc is one started process.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	Started time.Time

	file *os.File
	done chan struct{}
	err  error // set before done is closed
}

// Start runs cmd in a process group of its own, its stdout and stderr in
// <dir>/<name>.log (appended, so a restart keeps the earlier output).
func (g *Group) Start(name string, cmd *exec.Cmd) (*Proc, error) {
	logPath := filepath.Join(g.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, file: f, done: make(chan struct{})}
	// The file itself, not a pipe: descendants that inherit the output
	// (and outlive the process) must not keep Wait from returning.
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	execChildren.Store(cmd.Process.Pid, true)
	go func() {
		p.err = cmd.Wait()
		execChildren.Delete(cmd.Process.Pid)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited says whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit error once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Tail returns the last n lines in the process's log.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Output returns the end of the process's log, at most 64 KiB.
func (p *Proc) Output() string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

// Signal sends sig to the process alone.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.Cmd.Process.Signal(sig)
}

// Kill9 kills the process alone with SIGKILL, as a crash would, and waits
// for it to be reaped. Its children are left as they are.
func (p *Proc) Kill9() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends sig (SIGTERM, SIGINT) and waits up to grace; then it kills the
// whole process group. It reports whether the process exited within grace.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) bool {
	if p.Exited() {
		p.killGroup()
		return true
	}
	_ = p.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	clean := true
	select {
	case <-p.done:
	case <-t.C:
		clean = false
	}
	p.killGroup()
	<-p.done
	return clean
}

func (p *Proc) killGroup() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
}

// StopAll stops every process still running (SIGTERM, then the group's
// SIGKILL after grace) and then kills every remaining descendant of this
// process. It returns the descriptions of descendants that had to be killed
// after their owners stopped.
func (g *Group) StopAll(grace time.Duration) []string {
	g.mu.Lock()
	procs := append([]*Proc(nil), g.procs...)
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(syscall.SIGTERM, grace) }()
	}
	wg.Wait()
	return g.Reap()
}

// Reap kills every living descendant of this process that no Proc owns
// (orphans that came back to the subreaper) and returns what it killed.
// Call it only while no other child (a kubectl run) is being started or
// waited for outside the Group: it reaps adopted zombies.
func (g *Group) Reap() []string {
	var killed []string
	self := os.Getpid()
	for round := 0; round < 20; round++ {
		left := Descendants(self)
		var alive []Info
		for _, d := range left {
			if d.State != "Z" && !g.owns(d.Pid) {
				alive = append(alive, d)
			}
		}
		if len(alive) == 0 {
			break
		}
		for _, d := range alive {
			if round == 0 {
				killed = append(killed, fmt.Sprintf("%d %s", d.Pid, d.Cmdline))
			}
			_ = syscall.Kill(d.Pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reapZombies()
	return killed
}

// owns reports whether pid is a Proc of g that is still being waited for.
func (g *Group) owns(pid int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.procs {
		if p.Cmd.Process != nil && p.Cmd.Process.Pid == pid && !p.Exited() {
			return true
		}
	}
	return false
}

// reapZombies collects the exit status of adopted orphans (children that no
// exec.Cmd waits for), so they do not pile up as zombies over a long run.
func reapZombies() {
	for _, d := range Descendants(os.Getpid()) {
		if d.State == "Z" && d.PPid == os.Getpid() && !isExecChild(d.Pid) {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(d.Pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// execChildren are pids started through exec.Cmd, whose Wait reaps them;
// reaping them here would make that Wait fail.
var execChildren sync.Map

func isExecChild(pid int) bool { _, ok := execChildren.Load(pid); return ok }

// Info describes one process from /proc.
type Info struct {
	Pid, PPid int
	State     string
	Cmdline   string
}

// Descendants lists the processes below root, found through /proc.
func Descendants(root int) []Info {
	all := list()
	children := map[int][]Info{}
	for _, i := range all {
		children[i.PPid] = append(children[i.PPid], i)
	}
	var out []Info
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c.Pid)
		}
	}
	return out
}

func list() []Info {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Info
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if i, err := Stat(pid); err == nil {
			out = append(out, i)
		}
	}
	return out
}

// Stat reads pid's parent, state and command line.
func Stat(pid int) (Info, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Info{}, err
	}
	// The command name is in parentheses and may hold spaces.
	s := string(b)
	r := strings.LastIndexByte(s, ')')
	if r < 0 {
		return Info{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[r+1:])
	if len(f) < 2 {
		return Info{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return Info{Pid: pid, PPid: ppid, State: f[0], Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))}, nil
}

// RSS returns the resident set size of pid in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// OpenFDs counts the open file descriptors of pid.
func OpenFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// FindByEnv returns the living processes whose environment holds every one
// of the given KEY=VALUE pairs and whose command line contains cmdPart.
func FindByEnv(cmdPart string, env ...string) []int {
	var out []int
	for _, i := range list() {
		if i.State == "Z" || !strings.Contains(i.Cmdline, cmdPart) {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", i.Pid))
		if err != nil {
			continue
		}
		vars := map[string]bool{}
		for _, kv := range bytes.Split(b, []byte{0}) {
			vars[string(kv)] = true
		}
		ok := true
		for _, want := range env {
			if !vars[want] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, i.Pid)
		}
	}
	return out
}

// RaiseNoFile sets this process's soft RLIMIT_NOFILE to its hard limit and
// returns the new soft limit. Children started afterwards inherit it.
func RaiseNoFile() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	r.Cur = r.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("set RLIMIT_NOFILE: %w", err)
	}
	return r.Cur, nil
}

// NoFile returns pid's soft and hard RLIMIT_NOFILE.
func NoFile(pid int) (soft, hard uint64, err error) {
	var r unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &r); err != nil {
		return 0, 0, fmt.Errorf("read RLIMIT_NOFILE of %d: %w", pid, err)
	}
	return r.Cur, r.Max, nil
}

// SetNoFile sets pid's RLIMIT_NOFILE (soft and hard) to n; raising the hard
// limit needs CAP_SYS_RESOURCE.
func SetNoFile(pid int, n uint64) error {
	r := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &r, nil); err != nil {
		return fmt.Errorf("set RLIMIT_NOFILE of %d to %d: %w", pid, n, err)
	}
	return nil
}

// WaitListening polls addr until a TCP connection succeeds, every interval,
// until ctx is done. It returns when the first connection succeeded.
func WaitListening(ctx context.Context, addr string, interval time.Duration) (time.Time, error) {
	d := net.Dialer{Timeout: time.Second}
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			t := time.Now()
			c.Close()
			return t, nil
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("wait for %s to listen: %w", addr, errors.Join(ctx.Err(), err))
		}
		time.Sleep(interval)
	}
}

// Mem is a process's resident memory by kind, from /proc/<pid>/status
// (and PSS from smaps_rollup).
type Mem struct {
	// RSS = Anon + File + Shmem.
	RSS, Anon, File, Shmem int64
	// PSS counts shared pages divided by the processes sharing them.
	PSS     int64
	Threads int
}

// ReadMem reads pid's memory breakdown.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	var m Mem
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "RssAnon":
			m.Anon = n << 10
		case "RssFile":
			m.File = n << 10
		case "RssShmem":
			m.Shmem = n << 10
		case "Threads":
			m.Threads = int(n)
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("no VmRSS for %d", pid)
	}
	m.PSS, _ = PSS(pid)
	return m, nil
}

// String renders the breakdown in MB.
func (m Mem) String() string {
	return fmt.Sprintf("RSS %.1f MB = %.1f MB anonymous (heap, stacks) + %.1f MB file-backed (the mapped binary and libraries) + %.1f MB shared memory; PSS %.1f MB; %d threads",
		float64(m.RSS)/1e6, float64(m.Anon)/1e6, float64(m.File)/1e6, float64(m.Shmem)/1e6, float64(m.PSS)/1e6, m.Threads)
}

// CPUTime is the user plus system CPU time pid has used, all threads (and
// reaped children excluded), at the kernel's clock-tick resolution (10 ms).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	r := strings.LastIndexByte(s, ')')
	if r < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[r+1:])
	// After the command: state(0) ppid(1) ... utime is field 14 of the
	// whole line, so index 11 here; stime 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse cpu times of %d", pid)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(u+st) * tick, nil
}

// FDKinds counts pid's open file descriptors by what they are: socket,
// pipe, anon_inode (epoll, eventfd, pidfd...) or file.
func FDKinds(pid int) (map[string]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		kind := "file"
		switch {
		case strings.HasPrefix(target, "socket:"):
			kind = "socket"
		case strings.HasPrefix(target, "pipe:"):
			kind = "pipe"
		case strings.HasPrefix(target, "anon_inode:"):
			kind = "anon_inode"
		}
		out[kind]++
	}
	return out, nil
}

// PSS is pid's proportional set size in bytes (shared pages divided among
// the processes that map them), from /proc/<pid>/smaps_rollup.
func PSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse Pss of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no Pss for %d", pid)
}
