package runtime

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// usePidfd is switched off by tests to exercise the polling fallback.
var usePidfd = true

const pollInterval = 100 * time.Millisecond

// waitGone returns when the process recorded as (pid, startTicks) has exited
// (or never was), or with ctx's error.
func waitGone(ctx context.Context, pid int, startTicks uint64) error {
	if usePidfd {
		if handled, err := waitPidfd(ctx, pid, startTicks); handled {
			return err
		}
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		up, err := running(pid, startTicks)
		if err != nil {
			return err
		}
		if !up {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitPidfd waits on a pidfd through Go's poller, so a waiting caller holds
// no thread. handled is false when pidfds are not available (kernel before
// 5.3, seccomp) and the caller should poll instead.
func waitPidfd(ctx context.Context, pid int, startTicks uint64) (handled bool, err error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true, nil
	}
	if err != nil {
		return false, nil
	}
	// A pidfd names one process for good; checking the start time after
	// opening it proves the pid was not recycled before the open.
	if up, err := running(pid, startTicks); err != nil || !up {
		unix.Close(fd)
		return true, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return false, nil
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return false, nil // not registered with the poller
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		// Readable means exited; a zero-timeout poll asks without blocking.
		n, perr := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		exited = perr == nil && n > 0
		return exited
	})
	switch {
	case exited:
		return true, nil
	case ctx.Err() != nil:
		return true, ctx.Err()
	default:
		return false, nil
	}
}
