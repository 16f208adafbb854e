package agnhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// childArgsEnv makes the test binary act as `berth agnhost <args>`, wired the
// way the caller should wire Main: a signal context and ExitCode.
const childArgsEnv = "BERTH_AGNHOST_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if v := os.Getenv(childArgsEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", childArgsEnv, err)
			os.Exit(100)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := Main(ctx, args, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(ExitCode(err))
	}
	os.Exit(m.Run())
}

// startChild runs args in a child process and waits until its HTTP server
// at addr answers /hostname (or, without addr, until it printed anything).
func startChild(t *testing.T, addr string, args ...string) *exec.Cmd {
	t.Helper()
	enc, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+string(enc), EnvHostname+"=pod-proc", EnvBindAddress+"=127.0.0.1")
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for range 500 {
		if addr == "" {
			if stdout.String() != "" {
				return cmd
			}
		} else if resp, err := testClient.Get("http://" + addr + "/hostname"); err == nil {
			resp.Body.Close()
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child %v did not come up\nstderr:\n%s", args, stderr)
	return nil
}

func childExitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not exit")
		return -1
	}
}

func TestProcessExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Run("netexec SIGTERM", func(t *testing.T) {
		addr := freePort(t)
		_, port, _ := net.SplitHostPort(addr)
		cmd := startChild(t, addr, "netexec", "--http-port="+port, "--udp-port=-1")
		if got := get(t, "http://"+addr+"/hostname", nil); got.body != "pod-proc" {
			t.Errorf("/hostname = %q, want HOSTNAME", got.body)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if code := childExitCode(t, cmd); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("netexec /exit", func(t *testing.T) {
		addr := freePort(t)
		_, port, _ := net.SplitHostPort(addr)
		cmd := startChild(t, addr, "netexec", "--http-port="+port, "--udp-port=-1")
		testClient.Get("http://" + addr + "/exit?code=3")
		if code := childExitCode(t, cmd); code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
	})
	t.Run("pause SIGTERM", func(t *testing.T) {
		cmd := startChild(t, "", "pause")
		cmd.Process.Signal(syscall.SIGTERM)
		if code := childExitCode(t, cmd); code != 2 {
			t.Errorf("exit code %d, want 2", code)
		}
	})
	t.Run("usage error", func(t *testing.T) {
		enc, _ := json.Marshal([]string{"nosuch"})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childArgsEnv+"="+string(enc))
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("exit code %d, want 1 (output %s)", code, out)
		}
	})
}
