package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExec(t *testing.T) {
	f := newFixture(t)
	env := []string{markerKey + "=" + f.mark}
	t.Run("exit code and output", func(t *testing.T) {
		var out, errb bytes.Buffer
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: shArgv("echo hi; echo oops >&2; exit 4"), Env: env, Stdout: &out, Stderr: &errb})
		if err != nil || code != 4 || out.String() != "hi\n" || errb.String() != "oops\n" {
			t.Errorf("Exec = %d, %v, out %q err %q", code, err, out.String(), errb.String())
		}
	})
	t.Run("same writer for both", func(t *testing.T) {
		var out bytes.Buffer
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: shArgv("echo a; echo b >&2; echo c"), Env: env, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 || out.String() != "a\nb\nc\n" {
			t.Errorf("Exec = %d, %v, %q", code, err, out.String())
		}
	})
	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: []string{"cat"}, Env: env, Stdin: strings.NewReader("piped\n"), Stdout: &out})
		if err != nil || code != 0 || out.String() != "piped\n" {
			t.Errorf("Exec = %d, %v, %q", code, err, out.String())
		}
	})
	t.Run("dir and env", func(t *testing.T) {
		var out bytes.Buffer
		dir := t.TempDir()
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: shArgv(`pwd; echo "$FOO"`), Env: append(env, "FOO=bar"), Dir: dir, Stdout: &out})
		if err != nil || code != 0 || out.String() != dir+"\nbar\n" {
			t.Errorf("Exec = %d, %v, %q", code, err, out.String())
		}
	})
	t.Run("signal exit", func(t *testing.T) {
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: shArgv("kill -TERM $$"), Env: env})
		if err != nil || code != 143 {
			t.Errorf("Exec = %d, %v, want 143", code, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := f.rt.Exec(context.Background(), ExecSpec{Argv: []string{"berth-no-such-probe"}, Env: env})
		if !errors.Is(err, ErrExecutableNotFound) {
			t.Errorf("err = %v, want ErrExecutableNotFound", err)
		}
	})
	t.Run("timeout kills the group", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "pid")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		code, err := f.rt.Exec(ctx, ExecSpec{Argv: shArgv(fmt.Sprintf("sleep 30 & echo $! > %s; wait", pidFile)), Env: env})
		if !errors.Is(err, context.DeadlineExceeded) || code != 137 {
			t.Errorf("Exec = %d, %v; want 137 and DeadlineExceeded", code, err)
		}
		assertGone(t, pidFile)
	})
	t.Run("leftovers killed after exit", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "pid")
		code, err := f.rt.Exec(context.Background(), ExecSpec{Argv: shArgv(fmt.Sprintf("sleep 30 & echo $! > %s", pidFile)), Env: env})
		if err != nil || code != 0 {
			t.Fatalf("Exec = %d, %v", code, err)
		}
		assertGone(t, pidFile)
	})
	t.Run("canceled before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.rt.Exec(ctx, ExecSpec{Argv: []string{"true"}, Env: env}); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		if _, err := f.rt.Exec(context.Background(), ExecSpec{}); err == nil {
			t.Error("empty argv accepted")
		}
	})
}

func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		t.Log("the command was killed before it started its child; nothing to check")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := readProcStat(pid)
		if err != nil || st.State == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("background pid %d survived", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecInNetNSAndAsUser(t *testing.T) {
	f := newFixture(t)
	hostIno := netnsInode(t, "/proc/self/ns/net")
	nsPath, nsIno := newNetns(t)
	env := []string{markerKey + "=" + f.mark}
	var out bytes.Buffer
	code, err := f.rt.Exec(context.Background(), ExecSpec{NetNSPath: nsPath, Argv: []string{"readlink", "/proc/self/ns/net"}, Env: env, Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v", code, err)
	}
	if want := fmt.Sprintf("net:[%d]\n", nsIno); out.String() != want {
		t.Errorf("exec ran in %q, want %q", out.String(), want)
	}

	uid := int64(65534)
	out.Reset()
	code, err = f.rt.Exec(context.Background(), ExecSpec{NetNSPath: nsPath, Argv: shArgv("id -u; exit 9"), Env: env, UID: &uid, Stdout: &out})
	if err != nil || code != 9 || out.String() != "65534\n" {
		t.Errorf("Exec as nobody = %d, %v, %q", code, err, out.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if code, err := f.rt.Exec(ctx, ExecSpec{NetNSPath: nsPath, Argv: []string{"sleep", "30"}, Env: env}); !errors.Is(err, context.DeadlineExceeded) || code != 137 {
		t.Errorf("timed out exec = %d, %v", code, err)
	}

	// Every thread of this process is back in its own namespace, the main
	// thread included (tools read /proc/<pid>/ns/net from it).
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, p := range tasks {
		if netnsInode(t, p) == nsIno {
			t.Errorf("thread %s still in the pod netns", p)
		}
	}
	if netnsInode(t, "/proc/self/ns/net") != hostIno {
		t.Error("berth's main thread changed network namespace")
	}
}
