package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// bootID identifies this boot of the kernel; "" if unknown, which makes
// records match on pid and start time alone.
var bootID = sync.OnceValue(func() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
})

// thisBoot reports whether a record made in boot id is from this boot.
func thisBoot(id string) bool {
	return id == "" || bootID() == "" || id == bootID()
}

// procStat is what berth reads from /proc/<pid>/stat.
type procStat struct {
	State      byte   // R, S, D, Z, ...
	PPID       int    // parent
	PGRP       int    // process group
	StartTicks uint64 // start time in clock ticks after boot: with the pid, a process's identity
}

// parseProcStat parses the contents of /proc/<pid>/stat. The command name is
// in parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStat(data []byte) (procStat, error) {
	var st procStat
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return st, errors.New("malformed /proc stat: no command name")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 || len(fields[0]) != 1 {
		return st, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(fields))
	}
	st.State = fields[0][0]
	var err error
	if st.PPID, err = strconv.Atoi(string(fields[1])); err != nil {
		return st, fmt.Errorf("malformed /proc stat ppid: %w", err)
	}
	if st.PGRP, err = strconv.Atoi(string(fields[2])); err != nil {
		return st, fmt.Errorf("malformed /proc stat pgrp: %w", err)
	}
	if st.StartTicks, err = strconv.ParseUint(string(fields[19]), 10, 64); err != nil {
		return st, fmt.Errorf("malformed /proc stat starttime: %w", err)
	}
	return st, nil
}

// readProcStat reads /proc/<pid>/stat; an error wrapping os.ErrNotExist means
// there is no such process.
func readProcStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		// ESRCH shows up when the process goes away between open and read.
		if errors.Is(err, unix.ESRCH) {
			err = os.ErrNotExist
		}
		return procStat{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return parseProcStat(data)
}

// running reports whether pid is still the process that was recorded with
// startTicks and has not exited. Comparing the start time is what makes a
// recycled pid harmless: a new process with the old number started later.
// An error means /proc could not tell (say, out of file descriptors), which
// must never be taken for "gone": the caller would then kill a live
// container's group.
func running(pid int, startTicks uint64) (bool, error) {
	st, err := readProcStat(pid)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.StartTicks == startTicks && st.State != 'Z' && st.State != 'X', nil
}

// alive is running for callers for whom "cannot tell" means "alive".
func alive(pid int, startTicks uint64) bool {
	ok, err := running(pid, startTicks)
	return ok || err != nil
}

// killGroup sends sig to the process group whose leader was (pgid,
// startTicks), unless that group can no longer be ours. While any member of a
// group lives (a zombie leader counts), the kernel does not hand its number
// to a new process, so:
//   - process pgid exists with our start time: it is our leader, alive or a
//     zombie, and the group is ours;
//   - process pgid exists with another start time: the number was reused,
//     so our group is gone and the group of that number is someone else's;
//   - no process pgid: members of our group may remain, and since a new
//     group only gets a number its founder holds as pid, any group of that
//     number is ours.
func killGroup(pgid int, startTicks uint64, sig unix.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("refusing to signal process group %d", pgid)
	}
	st, err := readProcStat(pgid)
	switch {
	case err == nil && st.StartTicks != startTicks:
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := unix.Kill(-pgid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	return nil
}

// descendants lists the live (non-zombie) descendants of pid by walking
// /proc. The shim is a child subreaper, so every process its workload forked
// and orphaned, even one that left the process group, is in this tree.
func descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	states := map[int]byte{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(p)
		if err != nil {
			continue
		}
		children[st.PPID] = append(children[st.PPID], p)
		states[p] = st.State
	}
	var out []int
	queue := append([]int(nil), children[pid]...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if states[p] != 'Z' {
			out = append(out, p)
		}
		queue = append(queue, children[p]...)
	}
	return out, nil
}
