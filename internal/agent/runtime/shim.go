package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/agent/logs"
)

// How long the shim waits, after the workload exited and its leftovers were
// killed, for the output pipes to drain; only a process that escaped the
// subreaper tree could hold them open longer.
const drainTimeout = 2 * time.Second

// ShimMain is the body of berth's hidden shim subcommand. args are the
// arguments after the subcommand: "run <state-dir>" (what Runtime.Start
// runs), "spare" (a shim started ahead of need, told its state directory
// on fd 4 later; see Config.Prestart) or "start <state-dir>" (a first stage
// that re-executes the binary as "run"). It returns the process exit
// status.
//
// Runtime.Start runs "run" directly, in a new session, and reaps it; a
// restart of berth, even kill -9, changes nothing for the shim, which init
// (or the nearest subreaper) then reaps. "start" is the two-stage form, for
// callers that must not have the shim as their child: it re-executes the
// binary as "run" and exits at once.
func ShimMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) == 1 && args[0] == "spare" {
		unix.CloseOnExec(3)
		unix.CloseOnExec(4)
		return shimSpare(log, os.NewFile(3, "report"), os.NewFile(4, "control"))
	}
	if len(args) != 2 || (args[0] != "start" && args[0] != "run") {
		log.Error("usage: <shim> start|run <state-dir> | spare", "args", args)
		return 2
	}
	dir := args[1]
	log = log.With("dir", dir, "stage", args[0])
	// fd 3 is the report pipe to Runtime.Start; the workload must not
	// inherit it, or Start would wait for the workload to exit.
	unix.CloseOnExec(3)
	report := os.NewFile(3, "report")
	if args[0] == "start" {
		return shimStart(log, dir, args, report)
	}
	return shimRun(log, dir, report)
}

func sendReport(log *slog.Logger, report *os.File, rep startReport) {
	data, _ := json.Marshal(rep)
	// EPIPE here means berth is gone; the container runs on regardless and
	// the next berth adopts it.
	if _, err := report.Write(data); err != nil {
		log.Warn("send start report", "err", err)
	}
}

func failReport(log *slog.Logger, report *os.File, err error) {
	rep := startReport{Error: err.Error(), Kind: startErrorKind(err)}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		rep.Errno = int(errno)
	}
	sendReport(log, report, rep)
}

func shimStart(log *slog.Logger, dir string, args []string, report *os.File) int {
	// Re-run exactly how we were run (the subcommand prefix before args
	// included), through /proc/self/exe so that an upgrade of the berth
	// binary on disk cannot swap the shim halfway.
	n := len(os.Args) - len(args)
	if n < 1 || !slices.Equal(os.Args[n:], args) {
		failReport(log, report, fmt.Errorf("shim: cannot find its arguments in %q", os.Args))
		return 2
	}
	argv := append(slices.Clone(os.Args[:n]), "run", dir)
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       argv,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{report},
	}
	if err := cmd.Start(); err != nil {
		failReport(log, report, fmt.Errorf("shim: start second stage: %w", err))
		return 1
	}
	cmd.Process.Release()
	return 0
}

// shimSpare waits for the state directory of its container on control,
// sends its output to the container's shim log and runs it. EOF instead
// (berth no longer needs it, or has ended) makes it exit.
func shimSpare(log *slog.Logger, report, control *os.File) int {
	line, err := bufio.NewReader(io.LimitReader(control, 4096)).ReadString('\n')
	control.Close()
	if err != nil {
		return 0
	}
	dir := strings.TrimSuffix(line, "\n")
	log = log.With("dir", dir, "stage", "spare")
	if !filepath.IsAbs(dir) {
		failReport(log, report, fmt.Errorf("shim: state directory %q is not absolute", dir))
		return 2
	}
	out, err := os.OpenFile(filepath.Join(dir, shimLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		failReport(log, report, fmt.Errorf("shim: open log: %w", err))
		return 1
	}
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(out.Fd()), fd, 0); err != nil {
			failReport(log, report, fmt.Errorf("shim: redirect output: %w", err))
			return 1
		}
	}
	out.Close()
	return shimRun(log, dir, report)
}

func shimRun(log *slog.Logger, dir string, report *os.File) int {
	// This goroutine stays on this thread until the shim exits: the
	// workload's Pdeathsig is tied to the thread that forked it, and the
	// thread may be moved into the Pod's network namespace.
	goruntime.LockOSThread()

	me, err := readProcStat(os.Getpid())
	if err != nil {
		failReport(log, report, fmt.Errorf("shim: %w", err))
		return 1
	}
	// Exclusive: a second shim for the same container refuses to run.
	if err := writeJSON(dir, shimFile, shimRecord{PID: os.Getpid(), StartTicks: me.StartTicks, BootID: bootID()}, true); err != nil {
		failReport(log, report, fmt.Errorf("shim: %w", err))
		return 1
	}
	var spec ContainerSpec
	if ok, err := readJSON(dir, specFile, &spec); err != nil || !ok {
		failReport(log, report, fmt.Errorf("shim: read spec: %v", err))
		return 1
	}
	log = log.With("container", spec.ID)

	// Orphaned descendants of the workload come back to the shim, so none
	// outlive the container.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Warn("become child subreaper", "err", err)
	}
	// The container is stopped through Runtime.Signal, not by signalling the
	// shim; keep stray signals (a terminal hangup, a broad kill) from
	// taking down the shim and with it the container. signal.Notify, not
	// signal.Ignore: an ignored disposition would be inherited by the workload.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	go func() {
		for s := range sigs {
			log.Info("shim ignores signal", "signal", s)
		}
	}()

	w, err := startWorkload(dir, spec)
	if err != nil {
		log.Error("start container", "err", err)
		ex := exitRecord{ExitCode: 128, FinishedAt: time.Now(), Error: err.Error()}
		if werr := writeJSON(dir, exitFile, ex, true); werr != nil {
			log.Error("record start failure", "err", werr)
		}
		failReport(log, report, err)
		return 1
	}
	sendReport(log, report, startReport{PID: w.proc.Pid, StartTicks: w.startTicks, StartedAt: w.startedAt})
	report.Close()

	ex := w.supervise(log)
	if err := writeJSON(dir, exitFile, ex, true); err != nil {
		log.Error("record exit", "err", err)
	}
	signal.Stop(sigs)
	close(sigs)
	// Now the leader and everything else may go.
	reapChildren(time.Second)
	return 0
}

type workload struct {
	proc       *os.Process
	startTicks uint64
	startedAt  time.Time
	out        []*os.File // read ends of stdout and stderr
	logw       *logs.Writer
	copiers    sync.WaitGroup
}

// startWorkload execs the container process and starts copying its output.
func startWorkload(dir string, spec ContainerSpec) (*workload, error) {
	env, path := processEnv(spec.Env)
	exe, err := lookPath(spec.Argv[0], path, spec.Dir)
	if err != nil {
		return nil, err
	}
	cred, err := credential(spec.UID, spec.GID)
	if err != nil {
		return nil, err
	}
	if err := checkDir(workDir(spec.Dir)); err != nil {
		return nil, err
	}
	w := &workload{}
	if spec.LogPath != "" {
		w.logw, err = logs.NewWriter(logs.WriterConfig{Path: spec.LogPath, MaxBytes: spec.LogMaxBytes, MaxFiles: spec.LogMaxFiles})
		if err != nil {
			return nil, err
		}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	// The shim holds the read ends, so the workload's writes never fail with
	// EPIPE when berth goes away: berth is not on this path at all.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	defer outW.Close()
	defer errW.Close()
	w.out = []*os.File{outR, errR}
	fail := func(err error) (*workload, error) {
		outR.Close()
		errR.Close()
		if w.logw != nil {
			w.logw.Close()
		}
		return nil, err
	}
	if spec.NetNSPath != "" {
		if err := enterNetNS(spec.NetNSPath); err != nil {
			return fail(err)
		}
	}
	w.proc, err = startProcess(exe, spec.Argv, env, spec.Dir, []*os.File{devnull, outW, errW}, cred)
	w.startedAt = time.Now()
	if err != nil {
		return fail(err)
	}
	// The child cannot be reaped before we wait for it, so its stat exists.
	st, err := readProcStat(w.proc.Pid)
	if err != nil {
		w.proc.Kill()
		return fail(fmt.Errorf("read start time of pid %d: %w", w.proc.Pid, err))
	}
	w.startTicks = st.StartTicks
	if err := writeJSON(dir, startFile, startRecord{PID: w.proc.Pid, StartTicks: w.startTicks, BootID: bootID(), StartedAt: w.startedAt}, true); err != nil {
		unix.Kill(-w.proc.Pid, unix.SIGKILL)
		return fail(err)
	}
	for i, s := range []logs.Stream{logs.Stdout, logs.Stderr} {
		r := w.out[i]
		w.copiers.Add(1)
		go func() {
			defer w.copiers.Done()
			if w.logw == nil {
				io.Copy(io.Discard, r)
				return
			}
			w.logw.Copy(s, r)
		}()
	}
	return w, nil
}

// supervise reaps orphans until the workload exits, then ends what it left
// behind, drains its output and returns its exit record.
func (w *workload) supervise(log *slog.Logger) exitRecord {
	var ce childExit
	for {
		var err error
		ce, err = waitExitNoReap(unix.P_ALL, 0)
		if err != nil {
			// Cannot happen while the workload is unreaped; do not spin.
			log.Error("wait for container process", "err", err)
			ce = childExit{exitCode: LostExitCode}
			break
		}
		if ce.pid == w.proc.Pid {
			break
		}
		// An orphan the subreaper inherited.
		var ws unix.WaitStatus
		unix.Wait4(ce.pid, &ws, unix.WNOHANG, nil)
	}
	ex := exitRecord{ExitCode: ce.exitCode, Signal: ce.signal, FinishedAt: time.Now()}
	log.Info("container exited", "exitCode", ex.ExitCode, "signal", ex.Signal)

	// A container ends with its main process, as in a pid namespace: kill
	// the group (its id is still reserved by the unreaped leader), then any
	// descendant that left the group.
	if err := unix.Kill(-w.proc.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		log.Warn("kill container process group", "err", err)
	}
	killDescendants(log)

	done := make(chan struct{})
	go func() { w.copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		log.Warn("container output still open after exit; closing it")
		for _, f := range w.out {
			f.Close()
		}
		<-done
	}
	for _, f := range w.out {
		f.Close()
	}
	if w.logw != nil {
		if err := w.logw.Close(); err != nil {
			log.Warn("close container log", "err", err)
		}
	}
	return ex
}

// killDescendants SIGKILLs every live descendant of the shim, repeating
// while dying processes hand their children to it.
func killDescendants(log *slog.Logger) {
	for range 200 {
		pids, err := descendants(os.Getpid())
		if err != nil {
			log.Warn("list descendants", "err", err)
			return
		}
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Warn("descendants still alive after repeated SIGKILL")
}
