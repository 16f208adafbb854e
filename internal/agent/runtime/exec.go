package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Exec runs a one-off command in a Pod's network namespace and environment
// and returns its exit code (128+n if signal n ended it); a non-zero exit is
// not an error. When ctx ends first the command's whole process group is
// killed and the error wraps ctx.Err(). When the command exits, whatever it
// left running in its process group is killed too, so probes cannot pile up
// background processes.
//
// If Stdin is neither nil nor an *os.File, the goroutine copying it ends
// only when Stdin's Read returns; callers should close it after Exec
// returns, as with os/exec.
func (r *Runtime) Exec(ctx context.Context, spec ExecSpec) (int, error) {
	if err := validateProcess(spec.Argv, spec.Env, spec.Dir, spec.UID, spec.GID); err != nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	env, path := processEnv(spec.Env)
	exe, err := lookPath(spec.Argv[0], path, spec.Dir)
	if err != nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	cred, err := credential(spec.UID, spec.GID)
	if err != nil {
		return -1, fmt.Errorf("exec %q: %w", spec.Argv[0], err)
	}
	if err := checkDir(workDir(spec.Dir)); err != nil {
		return -1, fmt.Errorf("exec %q: %w", spec.Argv[0], err)
	}
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("exec %q: %w", spec.Argv[0], err)
	}
	sio, err := newExecIO(spec)
	if err != nil {
		return -1, fmt.Errorf("exec %q: %w", spec.Argv[0], err)
	}
	defer sio.closeParent()

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Locked for the command's whole life: Pdeathsig follows this thread.
		goruntime.LockOSThread()
		keepLocked := false
		code, err := func() (int, error) {
			defer sio.closeChild()
			var restore func() error
			if spec.NetNSPath != "" {
				var err error
				if restore, err = enterNetNSForFork(spec.NetNSPath); err != nil {
					return -1, err
				}
			}
			proc, err := startProcess(exe, spec.Argv, env, spec.Dir, sio.child[:], cred)
			if restore != nil {
				// Back to berth's namespace right after the fork: the
				// thread may be the main thread, whose namespace is what
				// /proc/<berth>/ns/net shows to every other tool.
				if rerr := restore(); rerr != nil {
					keepLocked = true // Go discards the thread when this goroutine ends
					r.log.Error("leave pod network namespace after exec", "netns", spec.NetNSPath, "err", rerr)
				}
			}
			sio.closeChild()
			if err != nil {
				return -1, err
			}
			return waitExec(ctx, proc)
		}()
		if !keepLocked {
			goruntime.UnlockOSThread()
		}
		done <- result{code, err}
	}()
	res := <-done
	sio.finish()
	if res.err != nil {
		return res.code, fmt.Errorf("exec %q: %w", spec.Argv[0], res.err)
	}
	return res.code, nil
}

// waitExec waits for proc, killing its group when ctx ends, and kills what
// is left of the group once the leader has exited but before it is reaped,
// while the group id cannot belong to anyone else.
func waitExec(ctx context.Context, proc *os.Process) (int, error) {
	var mu sync.Mutex
	reaped, killed := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !reaped {
			killed = true
			unix.Kill(-proc.Pid, unix.SIGKILL)
		}
	})
	defer stop()
	ce, err := waitExitNoReap(unix.P_PID, proc.Pid)
	mu.Lock()
	unix.Kill(-proc.Pid, unix.SIGKILL)
	reaped = true
	mu.Unlock()
	if _, werr := proc.Wait(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return -1, err
	}
	if killed {
		return ce.exitCode, ctx.Err()
	}
	return ce.exitCode, nil
}

// execIO connects an exec's stdio: files pass through, other readers and
// writers go through pipes with a copying goroutine each.
type execIO struct {
	child     [3]*os.File // what the process gets
	childEnds []*os.File  // pipe ends and /dev/null to close in berth after the start
	outReads  []*os.File  // read ends the output copiers drain
	stdinW    *os.File
	copiers   sync.WaitGroup
	closeOnce sync.Once
}

func newExecIO(spec ExecSpec) (*execIO, error) {
	sio := &execIO{}
	devnull := func() (*os.File, error) {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err == nil {
			sio.childEnds = append(sio.childEnds, f)
		}
		return f, err
	}
	var err error
	switch in := spec.Stdin.(type) {
	case nil:
		sio.child[0], err = devnull()
	case *os.File:
		sio.child[0] = in
	default:
		var pr *os.File
		pr, sio.stdinW, err = os.Pipe()
		if err == nil {
			sio.child[0] = pr
			sio.childEnds = append(sio.childEnds, pr)
			w := sio.stdinW
			go func() {
				io.Copy(w, in)
				w.Close()
			}()
		}
	}
	if err != nil {
		sio.closeChild()
		return nil, err
	}
	outs := []io.Writer{spec.Stdout, spec.Stderr}
	for i, out := range outs {
		if i == 1 && sameWriter(spec.Stdout, spec.Stderr) && sio.child[1] != nil {
			// One pipe for both, so the writer sees one writer, as os/exec does.
			sio.child[2] = sio.child[1]
			continue
		}
		switch o := out.(type) {
		case nil:
			sio.child[i+1], err = devnull()
		case *os.File:
			sio.child[i+1] = o
		default:
			var pr, pw *os.File
			pr, pw, err = os.Pipe()
			if err == nil {
				sio.child[i+1] = pw
				sio.childEnds = append(sio.childEnds, pw)
				sio.outReads = append(sio.outReads, pr)
				sio.copiers.Add(1)
				go func() {
					defer sio.copiers.Done()
					io.Copy(o, pr)
				}()
			}
		}
		if err != nil {
			sio.closeChild()
			sio.closeParent()
			sio.copiers.Wait()
			return nil, err
		}
	}
	return sio, nil
}

func (sio *execIO) closeChild() {
	sio.closeOnce.Do(func() {
		for _, f := range sio.childEnds {
			f.Close()
		}
	})
}

// finish waits for the output to drain after the process and its group
// are gone; a process that escaped the group could hold the pipes open, so
// the wait is bounded.
func (sio *execIO) finish() {
	if sio.stdinW != nil {
		sio.stdinW.Close()
	}
	done := make(chan struct{})
	go func() { sio.copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		for _, f := range sio.outReads {
			f.Close()
		}
		<-done
	}
}

func (sio *execIO) closeParent() {
	sio.closeChild()
	for _, f := range sio.outReads {
		f.Close()
	}
	if sio.stdinW != nil {
		sio.stdinW.Close()
	}
}

// sameWriter reports whether a and b are the same comparable writer.
func sameWriter(a, b io.Writer) (same bool) {
	if a == nil || b == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
