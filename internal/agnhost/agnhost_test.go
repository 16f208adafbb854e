package agnhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMainUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{"missing subcommand", "netexec", "pause", "serve-hostname"}},
		{[]string{"porter"}, []string{`unknown subcommand "porter"`, "netexec, pause, serve-hostname"}},
		{[]string{"--http-port=80"}, []string{`unknown subcommand "--http-port=80"`}},
	}
	for _, tc := range tests {
		err := Main(t.Context(), tc.args, io.Discard, io.Discard)
		if err == nil {
			t.Fatalf("Main(%q) = nil, want an error", tc.args)
		}
		mustContain(t, err.Error(), tc.want...)
		if ExitCode(err) != 1 {
			t.Errorf("ExitCode(%v) = %d, want 1", err, ExitCode(err))
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&ExitError{Code: 0}, 0},
		{&ExitError{Code: 42}, 42},
		{fmt.Errorf("wrapped: %w", &ExitError{Code: 3}), 3},
		{errors.New("boom"), 1},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestIsImage(t *testing.T) {
	tests := []struct {
		image string
		want  bool
	}{
		{"registry.k8s.io/e2e-test-images/agnhost:2.53", true},
		{"registry.k8s.io/e2e-test-images/agnhost", true},
		{"registry.k8s.io/e2e-test-images/agnhost@sha256:abcd", true},
		{"registry.k8s.io/e2e-test-images/agnhost:2.53@sha256:abcd", true},
		{"k8s.gcr.io/e2e-test-images/agnhost:2.32", true},
		{"registry.k8s.io/e2e-test-images/busybox:1.36", false},
		{"agnhost", false},
		{"example.com:5000/e2e-test-images/agnhost:2.53", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := IsImage(tc.image); got != tc.want {
			t.Errorf("IsImage(%q) = %v, want %v", tc.image, got, tc.want)
		}
	}
}

func TestContainerArgs(t *testing.T) {
	tests := []struct {
		command, args []string
		want          []string
		ok            bool
	}{
		{nil, nil, []string{"pause"}, true},
		{nil, []string{"netexec", "--http-port=3000"}, []string{"netexec", "--http-port=3000"}, true},
		{[]string{"/agnhost", "netexec"}, []string{"--http-port=3000"}, []string{"netexec", "--http-port=3000"}, true},
		{[]string{"/agnhost"}, []string{"serve-hostname"}, []string{"serve-hostname"}, true},
		{[]string{"agnhost-2", "pause"}, nil, []string{"pause"}, true},
		{[]string{"/agnhost"}, nil, []string{}, true},
		{[]string{"/bin/sh", "-c", "sleep 1"}, nil, nil, false},
	}
	for _, tc := range tests {
		got, ok := ContainerArgs(tc.command, tc.args)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ContainerArgs(%q, %q) = %q, %v; want %q, %v", tc.command, tc.args, got, ok, tc.want, tc.ok)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPause(t *testing.T) {
	t.Run("SIGTERM", func(t *testing.T) {
		p := start(t, startOpts{}, "pause")
		waitFor(t, "Paused", func() bool { return p.stdout.String() == "Paused\n" })
		if got := exitCodeOf(t, p.stop(t)); got != 2 {
			t.Errorf("exit code %d, want 2", got)
		}
		mustContain(t, p.stdout.String(), "exiting 2\n")
	})
	t.Run("SIGINT", func(t *testing.T) {
		// A real SIGINT to this process, caught by signal.NotifyContext as
		// the caller does, must give upstream's exit code 1.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		p := start(t, startOpts{ctx: ctx}, "pause")
		waitFor(t, "Paused", func() bool { return strings.HasPrefix(p.stdout.String(), "Paused") })
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if got := exitCodeOf(t, p.wait(t)); got != 1 {
			t.Errorf("exit code %d, want 1", got)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		err := run(t.Context(), []string{"pause", "--delay-shutdown=x"}, newRuntime(io.Discard, io.Discard, os.Getenv))
		if err == nil || ExitCode(err) != 1 {
			t.Errorf("err %v, want a usage error", err)
		}
	})
}
