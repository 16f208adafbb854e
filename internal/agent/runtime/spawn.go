package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysProcAttr is how every workload and exec process is started.
//
// Setpgid puts it in a process group of its own, so that a signal to the
// group reaches whatever it forks. Pdeathsig kills it when its parent goes
// away (the shim for a container, berth for an exec): a workload whose shim
// died has nobody reading its output or recording its exit, so it must not
// run on unnoticed. Pdeathsig only reaches the direct child; the shim is
// also a child subreaper so that orphaned grandchildren come back to it and
// die with the container, and Runtime kills the group of a container whose
// shim died. The kernel ties Pdeathsig to the parent *thread*: callers start
// processes from a goroutine locked to its thread that stays alive until
// the process has exited.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
}

// enterNetNS moves the calling thread into the network namespace at path;
// processes started from the thread are born in it. The caller has locked
// its goroutine to the thread, and must move it back (enterNetNSForFork) or
// never unlock it, so that no other goroutine runs in the namespace. The
// shim does the latter: its locked main thread is the container's. Doing
// this on a thread avoids re-executing a helper binary for every exec probe.
func enterNetNS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	return nil
}

// enterNetNSForFork moves the calling, locked thread into the network
// namespace at path and returns how to move it back. The processes it starts
// meanwhile are born in the namespace; nothing else should run in between.
func enterNetNSForFork(path string) (restore func() error, err error) {
	origin, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	if err := enterNetNS(path); err != nil {
		origin.Close()
		return nil, err
	}
	return func() error {
		defer origin.Close()
		return unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET)
	}, nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("working directory %s: not a directory", dir)
	}
	return nil
}

// startProcess starts argv with the resolved executable. It classifies a
// failed exec so that a missing file (or a missing #! interpreter, which
// the kernel also reports as ENOENT) is ErrExecutableNotFound.
func startProcess(exe string, argv, env []string, dir string, files []*os.File, cred *syscall.Credential) (*os.Process, error) {
	proc, err := os.StartProcess(exe, argv, &os.ProcAttr{
		Dir:   workDir(dir),
		Env:   env,
		Files: files,
		Sys:   sysProcAttr(cred),
	})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%q: %v: %w", argv[0], err, ErrExecutableNotFound)
		}
		return nil, fmt.Errorf("start %q: %w", argv[0], err)
	}
	return proc, nil
}

// childExit is how a child ended, from waitid's siginfo.
type childExit struct {
	pid      int
	exitCode int    // the exit status, or 128+signal as shells and the kubelet show it
	signal   string // "SIGKILL" etc. when a signal ended it
}

// si_code values for SIGCHLD (<asm-generic/siginfo.h>), which x/sys/unix
// does not define.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// sigchldInfo is the SIGCHLD view of siginfo_t on Linux (same layout on all
// 64-bit architectures Go supports): signo, errno, code, padding, then pid,
// uid and status.
type sigchldInfo struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [100]byte
}

var _ [unsafe.Sizeof(unix.Siginfo{}) - unsafe.Sizeof(sigchldInfo{})]byte // sizes must match
var _ [unsafe.Sizeof(sigchldInfo{}) - unsafe.Sizeof(unix.Siginfo{})]byte

// waitExitNoReap blocks until a child that idtype/id select exits and
// reports it, leaving it a zombie (WNOWAIT). Keeping the zombie keeps its pid
// and process group id reserved, so the group can still be signalled
// safely after its leader ended.
func waitExitNoReap(idtype, id int) (childExit, error) {
	for {
		var info sigchldInfo
		err := unix.Waitid(idtype, id, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return childExit{}, err
		}
		ce := childExit{pid: int(info.Pid)}
		switch info.Code {
		case cldExited:
			ce.exitCode = int(info.Status)
		case cldKilled, cldDumped:
			ce.exitCode = 128 + int(info.Status)
			ce.signal = unix.SignalName(unix.Signal(info.Status))
			if ce.signal == "" {
				ce.signal = fmt.Sprintf("signal %d", info.Status)
			}
		default:
			ce.exitCode = int(info.Status)
		}
		return ce, nil
	}
}

// reap collects exited children without blocking for longer than max.
func reapChildren(max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (pid == 0 && time.Now().After(deadline)) {
			return // ECHILD: none left
		}
		if pid == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// startErrorKind says which typed error a start failure carries across the
// shim's report.
func startErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrExecutableNotFound):
		return "notFound"
	case errors.Is(err, fs.ErrPermission):
		return "permission"
	}
	return ""
}
