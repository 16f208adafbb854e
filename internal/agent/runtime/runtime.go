package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: no container with that ID in StateDir.
	ErrNotFound = errors.New("container not found")
	// ErrExists: Start with an ID that is already in StateDir.
	ErrExists = errors.New("container already exists")
	// ErrRunning: Remove of a container that has not exited.
	ErrRunning = errors.New("container is running")
)

// LostExitCode is the exit code recorded when the shim died before it could
// record the container's exit; it is what the kubelet reports for a
// container it could not locate (ContainerStatusUnknown).
const LostExitCode = 137

const (
	defaultStartTimeout = 30 * time.Second
	startGrace          = time.Second
)

// Config configures a Runtime.
type Config struct {
	// StateDir holds one directory per container. Berth must not clear it
	// when it starts, or it cannot adopt what runs; a tmpfs such as
	// /run/berth/containers fits, since a reboot ends the containers too.
	StateDir string
	// ShimPath and ShimArgs run the shim: the berth binary (absolute, e.g.
	// from os.Executable) and the hidden subcommand that calls ShimMain with
	// the arguments that follow it.
	ShimPath string
	ShimArgs []string
	// Logger receives what the runtime handles itself (lost containers).
	Logger *slog.Logger
	// StartTimeout bounds how long Start waits for the shim to report;
	// zero means 30s.
	StartTimeout time.Duration
	// Prestart keeps one shim started ahead of need, past its own start-up
	// (Go runtime and package init of the berth binary, ~40 ms), waiting to
	// be told the state directory of the next container; Start hands the
	// container to it and starts the next spare in the background. The
	// first spare starts at Warm or at the first Start. The spare exits
	// when Close is called or this process ends.
	Prestart bool
}

// Runtime starts, observes, signals and removes containers under StateDir.
// It keeps no state of its own beyond Config: everything is read from
// StateDir, so any number of Runtimes (or a new one after a restart) agree.
// Its methods are safe for concurrent use. (With Config.Prestart it also
// holds a spare shim process; see Close.)
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// Fields below are guarded by mu.
	spare     *spare
	refilling bool
	closed    bool
	// starting counts spares being started, which Close waits for.
	starting sync.WaitGroup
}

// State is what is known about one container.
type State struct {
	ID   string
	Spec ContainerSpec
	// PID is the workload's pid, which is also its process group id. It is
	// 0 if the process never started (see Error), or while the shim is
	// still starting it.
	PID       int
	StartedAt time.Time
	// Running is true from Start until the exit is recorded. A container
	// with Running false, PID 0 and a zero FinishedAt was created but its
	// shim never reported (berth died inside Start): Remove it.
	Running bool
	// ExitCode is the exit status, or 128+n when signal n ended it.
	ExitCode int
	// Signal names the signal that ended the process, e.g. "SIGKILL".
	Signal     string
	FinishedAt time.Time
	// Lost means the shim died before recording the exit (someone killed
	// it): the exit is unknown, ExitCode is LostExitCode, and the runtime
	// has killed what was left of the process group.
	Lost bool
	// Error says why the process could not be started (ExitCode 128) or why
	// it was lost.
	Error string
}

// New checks cfg and creates StateDir.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("runtime: empty StateDir")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("runtime: StateDir %q is not absolute", cfg.StateDir)
	}
	if !filepath.IsAbs(cfg.ShimPath) {
		return nil, fmt.Errorf("runtime: ShimPath %q is not absolute (use os.Executable)", cfg.ShimPath)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = defaultStartTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime: create state dir: %w", err)
	}
	return &Runtime{cfg: cfg, log: log}, nil
}

func (r *Runtime) dir(id string) string { return filepath.Join(r.cfg.StateDir, id) }

// Start runs a container and returns once its process has been exec'd, with
// its PID and start time. A missing executable is an error wrapping
// ErrExecutableNotFound, reported here rather than as an exit. If Start
// fails, or ctx ends first, nothing is left behind: no process and no state.
func (r *Runtime) Start(ctx context.Context, spec ContainerSpec) (State, error) {
	if err := spec.validate(); err != nil {
		return State{}, fmt.Errorf("start container: %w", err)
	}
	// Check what can be checked here so that the common mistakes come back
	// at once and typed; the shim checks again where it execs.
	_, path := processEnv(spec.Env)
	if _, err := lookPath(spec.Argv[0], path, spec.Dir); err != nil {
		return State{}, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	if _, err := credential(spec.UID, spec.GID); err != nil {
		return State{}, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	if err := checkDir(workDir(spec.Dir)); err != nil {
		return State{}, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	if spec.NetNSPath != "" {
		if _, err := os.Stat(spec.NetNSPath); err != nil {
			return State{}, fmt.Errorf("start container %s: network namespace: %w", spec.ID, err)
		}
	}
	dir := r.dir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return State{}, fmt.Errorf("start container %s: %w", spec.ID, ErrExists)
		}
		return State{}, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	if err := r.start(ctx, dir, spec); err != nil {
		r.abort(dir)
		return State{}, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	return r.State(spec.ID)
}

// startReport is what the shim sends back on its report pipe.
type startReport struct {
	PID        int       `json:"pid,omitempty"`
	StartTicks uint64    `json:"startTicks,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	Error      string    `json:"error,omitempty"`
	Kind       string    `json:"kind,omitempty"` // see startErrorKind
	Errno      int       `json:"errno,omitempty"`
}

// shimError carries a start failure from the shim with its kind, so that
// errors.Is works on this side of the pipe.
type shimError struct {
	msg  string
	kind error
}

func (e *shimError) Error() string { return e.msg }
func (e *shimError) Unwrap() error { return e.kind }

func (rep *startReport) err() error {
	if rep.Error == "" {
		return nil
	}
	e := &shimError{msg: rep.Error}
	switch {
	case rep.Kind == "notFound":
		e.kind = ErrExecutableNotFound
	case rep.Kind == "permission":
		e.kind = fs.ErrPermission
	case rep.Errno != 0:
		e.kind = syscall.Errno(rep.Errno)
	}
	return e
}

func (r *Runtime) start(ctx context.Context, dir string, spec ContainerSpec) error {
	if err := writeJSON(dir, specFile, spec, true); err != nil {
		return err
	}
	if sp := r.takeSpare(); sp != nil {
		err := sp.hand(dir)
		if err == nil {
			return r.awaitReport(ctx, dir, sp.report, sp.wait)
		}
		r.log.Warn("spare shim unusable; starting one", "err", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, shimLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open shim log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("report pipe: %w", err)
	}

	// The shim runs as this process's child (in a session of its own) and
	// is reaped here; after a restart of berth it is init's, as any
	// orphan. Starting the long-lived stage directly saves the second exec
	// of the berth binary that "start" costs, on every container start.
	args := append(slices.Clone(r.cfg.ShimArgs), "run", dir)
	cmd := exec.Command(r.cfg.ShimPath, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	// A session of its own: berth's terminal or process group signals
	// (Ctrl-C, a group kill of berth) do not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("run shim %s: %w", r.cfg.ShimPath, err)
	}
	return r.awaitReport(ctx, dir, pr, reaper(cmd))
}

// reaper waits for cmd in the background, so that it is reaped whenever it
// exits, and returns a function that waits for that.
func reaper(cmd *exec.Cmd) func() error {
	done := make(chan struct{})
	var err error
	go func() {
		err = cmd.Wait()
		close(done)
	}()
	return func() error {
		<-done
		return err
	}
}

// awaitReport reads the shim's start report from pr (and closes it); wait
// waits for the shim to exit, used when it ended without reporting.
func (r *Runtime) awaitReport(ctx context.Context, dir string, pr *os.File, wait func() error) error {
	defer pr.Close()
	deadline := time.Now().Add(r.cfg.StartTimeout)
	if err := pr.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("report pipe: %w", err)
	}
	// When ctx ends, still give the shim a moment to report: knowing what
	// it started is what lets abort clean up without races.
	stop := context.AfterFunc(ctx, func() {
		if d := time.Now().Add(startGrace); d.Before(deadline) {
			pr.SetReadDeadline(d)
		}
	})
	// Both shim stages hold the pipe; EOF means both are done with it.
	data, readErr := io.ReadAll(io.LimitReader(pr, 1<<20))
	stop()
	if len(bytes.TrimSpace(data)) == 0 && readErr == nil {
		// The pipe closed without a word: the shim has exited.
		waitErr := wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("shim ended without reporting (%v): %s", waitErr, tailFile(filepath.Join(dir, shimLog), 512))
	}
	// The shim lives as long as its container; it is reaped in the
	// background.
	if err := ctx.Err(); err != nil {
		return err
	}
	if readErr != nil {
		return fmt.Errorf("no report from shim within %s: %w", r.cfg.StartTimeout, readErr)
	}
	var rep startReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("bad report from shim %q: %w", data, err)
	}
	return rep.err()
}

// spare is a shim started ahead of need: past its own start-up, it blocks
// reading the state directory of the container it is to run from ctrl.
type spare struct {
	pid    int
	ctrl   *os.File // write end: the state directory and a newline
	report *os.File // read end of its report pipe
	wait   func() error
	exited chan struct{}
}

// hand gives the spare its container. On error the spare is gone.
func (sp *spare) hand(dir string) error {
	select {
	case <-sp.exited:
		sp.discard()
		return errors.New("it has exited")
	default:
	}
	_, err := io.WriteString(sp.ctrl, dir+"\n")
	sp.ctrl.Close()
	if err != nil {
		sp.report.Close()
		return err
	}
	return nil
}

// discard ends the spare: EOF on ctrl makes it exit.
func (sp *spare) discard() {
	sp.ctrl.Close()
	sp.report.Close()
}

// takeSpare returns the spare shim, if there is one, and starts the next in
// the background.
func (r *Runtime) takeSpare() *spare {
	if !r.cfg.Prestart {
		return nil
	}
	r.mu.Lock()
	sp := r.spare
	r.spare = nil
	r.mu.Unlock()
	go r.refill()
	return sp
}

// Warm starts the spare shim now (with Config.Prestart) instead of at the
// first Start, in the background.
func (r *Runtime) Warm() {
	if r.cfg.Prestart {
		go r.refill()
	}
}

// refill starts a spare shim unless there is one or one is being started.
func (r *Runtime) refill() {
	r.mu.Lock()
	if r.closed || r.spare != nil || r.refilling {
		r.mu.Unlock()
		return
	}
	r.refilling = true
	r.starting.Add(1)
	r.mu.Unlock()
	defer r.starting.Done()
	sp, err := r.newSpare()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refilling = false
	if err != nil {
		r.log.Warn("start spare shim", "err", err)
		return
	}
	if r.closed || r.spare != nil {
		sp.discard()
		return
	}
	r.spare = sp
}

func (r *Runtime) newSpare() (*spare, error) {
	cr, cw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("control pipe: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		cr.Close()
		cw.Close()
		return nil, fmt.Errorf("report pipe: %w", err)
	}
	cmd := exec.Command(r.cfg.ShimPath, append(slices.Clone(r.cfg.ShimArgs), "spare")...)
	// Its output goes to /dev/null until it learns its state directory
	// and opens the container's shim log.
	cmd.ExtraFiles = []*os.File{pw, cr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	cr.Close()
	if err != nil {
		pr.Close()
		cw.Close()
		return nil, fmt.Errorf("run shim %s: %w", r.cfg.ShimPath, err)
	}
	sp := &spare{pid: cmd.Process.Pid, ctrl: cw, report: pr, exited: make(chan struct{})}
	wait := reaper(cmd)
	go func() {
		wait()
		close(sp.exited)
	}()
	sp.wait = wait
	return sp, nil
}

// Close ends the spare shim (with Config.Prestart); containers are not
// affected. It waits for a spare being started to have exec'd, so that no
// child of this process still holds a copy of its descriptors (a lock
// file's, say) once Close returns. Start after Close starts shims the
// usual way.
func (r *Runtime) Close() {
	r.mu.Lock()
	r.closed = true
	if r.spare != nil {
		r.spare.discard()
		r.spare = nil
	}
	r.mu.Unlock()
	r.starting.Wait()
}

// abort undoes a failed Start: whatever the shim got to run is killed and
// the state directory removed.
func (r *Runtime) abort(dir string) {
	var sh shimRecord
	if ok, _ := readJSON(dir, shimFile, &sh); ok && thisBoot(sh.BootID) && alive(sh.PID, sh.StartTicks) {
		// The workload, if it got that far, dies with it (Pdeathsig).
		unix.Kill(sh.PID, unix.SIGKILL)
	}
	var st startRecord
	if ok, _ := readJSON(dir, startFile, &st); ok {
		killGroup(st.PID, st.StartTicks, unix.SIGKILL)
	}
	for range 10 {
		if err := os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.log.Error("remove state of failed container start", "dir", dir)
}

// State returns what is known about container id, or an error wrapping
// ErrNotFound. If it finds that the shim died without recording the exit,
// it records the container as Lost and kills what is left of its process
// group, so that every later State agrees.
func (r *Runtime) State(id string) (State, error) {
	rec, err := r.observe(id)
	if err != nil {
		return State{}, err
	}
	return rec.state(), nil
}

func (r *Runtime) observe(id string) (*record, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	dir := r.dir(id)
	rec, err := loadRecord(dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if rec.exit == nil && rec.shim != nil {
		sameBoot := thisBoot(rec.shim.BootID)
		up := false
		if sameBoot {
			if up, err = running(rec.shim.PID, rec.shim.StartTicks); err != nil {
				return nil, fmt.Errorf("container %s: check shim: %w", id, err)
			}
		}
		if up {
			return rec, nil
		}
		// The shim writes exit.json just before it exits: look again
		// before calling the container lost.
		if err := rec.loadExit(dir); err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		if rec.exit == nil {
			r.markLost(dir, rec, sameBoot)
		}
	}
	return rec, nil
}

// markLost records the exit of a container whose shim is gone and kills
// what is left of its process group, unless the records are from an earlier
// boot, whose processes are all gone and whose pids mean nothing now.
func (r *Runtime) markLost(dir string, rec *record, sameBoot bool) {
	ex := exitRecord{ExitCode: LostExitCode, FinishedAt: time.Now(), Lost: true,
		Error: "the shim exited without recording the container's exit"}
	if !sameBoot {
		ex.Error = "the node rebooted while the container ran"
	} else if rec.start == nil {
		ex.Error = "the shim exited before starting the process"
	} else if err := killGroup(rec.start.PID, rec.start.StartTicks, unix.SIGKILL); err != nil {
		r.log.Error("kill process group of lost container", "container", rec.spec.ID, "pid", rec.start.PID, "err", err)
	}
	err := writeJSON(dir, exitFile, ex, true)
	if errors.Is(err, fs.ErrExist) {
		// Another observer got there first; use what it wrote.
		if rec.loadExit(dir) == nil && rec.exit != nil {
			return
		}
	} else if err != nil {
		r.log.Error("record lost container", "container", rec.spec.ID, "err", err)
	} else {
		r.log.Warn("container lost: its shim died", "container", rec.spec.ID, "pod", rec.spec.PodNamespace+"/"+rec.spec.PodName)
	}
	rec.exit = &ex
}

func (rec *record) state() State {
	st := State{ID: rec.spec.ID, Spec: rec.spec}
	if rec.start != nil {
		st.PID, st.StartedAt = rec.start.PID, rec.start.StartedAt
	}
	switch {
	case rec.exit != nil:
		st.ExitCode = rec.exit.ExitCode
		st.Signal = rec.exit.Signal
		st.FinishedAt = rec.exit.FinishedAt
		st.Lost = rec.exit.Lost
		st.Error = rec.exit.Error
	case rec.shim != nil:
		st.Running = true
	}
	return st
}

// List returns every container in StateDir, sorted by ID: after a restart,
// this is what the agent adopts. Entries it cannot read are logged and
// skipped.
func (r *Runtime) List() ([]State, error) {
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []State
	for _, e := range entries {
		if !e.IsDir() || validateID(e.Name()) != nil {
			continue
		}
		st, err := r.State(e.Name())
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				r.log.Error("read container state", "container", e.Name(), "err", err)
			}
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// Signal sends sig to the container's whole process group. It is a no-op
// for a container that has already exited.
func (r *Runtime) Signal(id string, sig syscall.Signal) error {
	rec, err := r.observe(id)
	if err != nil {
		return err
	}
	if rec.exit != nil {
		return nil
	}
	if rec.shim == nil || rec.start == nil {
		return fmt.Errorf("signal container %s: not started yet", id)
	}
	// While exit.json is absent the shim keeps the exited leader as a
	// zombie, so the group id is still ours.
	if err := killGroup(rec.start.PID, rec.start.StartTicks, unix.Signal(sig)); err != nil {
		return fmt.Errorf("signal container %s: %w", id, err)
	}
	return nil
}

// Remove deletes the state of a container that is not running (its logs
// stay: the caller owns LogPath). Removing an unknown ID is not an error.
func (r *Runtime) Remove(id string) error {
	st, err := r.State(id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("remove container: %w", err)
	case st.Running:
		return fmt.Errorf("remove container %s: %w", id, ErrRunning)
	}
	if err := os.RemoveAll(r.dir(id)); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// Wait blocks until container id is no longer running, or ctx ends, and
// returns its State. It watches the shim with a pidfd (falling back to
// polling /proc): the shim exits right after recording the exit, so its
// end is the moment the exit is known. Each call costs no goroutine or
// thread of the runtime's; the caller's goroutine blocks.
func (r *Runtime) Wait(ctx context.Context, id string) (State, error) {
	for {
		rec, err := r.observe(id)
		if err != nil {
			return State{}, err
		}
		st := rec.state()
		if !st.Running {
			return st, nil
		}
		if err := waitGone(ctx, rec.shim.PID, rec.shim.StartTicks); err != nil {
			return st, err
		}
	}
}

// tailFile returns up to n bytes of the end of a file, for error messages.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	f.ReadAt(buf, off)
	return string(bytes.TrimSpace(buf))
}
