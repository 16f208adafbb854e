package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// markerKey tags every process the tests start (in its environment or, for
// shims, in its command line through the state dir), so TestMain can prove
// none is left behind.
const markerKey = "BERTH_RT_TEST"

var testRoot string

func TestMain(m *testing.M) {
	// The test binary doubles as berth: the shim and a stand-in for a berth
	// process that is killed with -9.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__shim":
			os.Exit(ShimMain(os.Args[2:]))
		case "__starter":
			os.Exit(starterMain(os.Args[2:]))
		}
	}
	// Under -race every process sleeps a second at exit (atexit_sleep_ms);
	// the shims are this binary, and Start waits for the first stage.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	root, err := os.MkdirTemp("", "berth-rt-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testRoot = root
	code := m.Run()
	if left := waitNoLeftovers(root, 10*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left behind: %v\n", left)
		for _, p := range left {
			killPID(p)
		}
		code = 1
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), netnsPrefix) {
		fmt.Fprintf(os.Stderr, "FAIL: network namespaces left behind:\n%s", out)
		code = 1
	}
	os.RemoveAll(root)
	os.Exit(code)
}

// markedProcs lists live processes that carry mark in their environment or
// command line.
func markedProcs(mark string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.State == 'Z' {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(env), mark) || strings.Contains(string(cmd), mark) {
			out = append(out, pid)
		}
	}
	return out
}

func waitNoLeftovers(mark string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := markedProcs(mark)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// starterMain plays a berth that starts one container and is then killed:
// args are state dir, container id, log path and the script to run.
func starterMain(args []string) int {
	if len(args) != 4 {
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	r, err := New(Config{StateDir: args[0], ShimPath: exe, ShimArgs: []string{"__shim"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := r.Start(context.Background(), ContainerSpec{
		ID:      args[1],
		Argv:    []string{"/bin/sh", "-c", args[3]},
		Env:     []string{markerKey + "=" + os.Getenv(markerKey), "PATH=" + DefaultPath},
		LogPath: args[2],
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(st)
	// Stay alive until killed.
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	return 0
}
