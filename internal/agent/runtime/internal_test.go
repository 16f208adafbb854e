package runtime

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// Fields 10-21 (minflt .. itrealvalue), then 22 starttime and more.
	tail := " 0 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100 18446744073709551615"
	tests := []struct {
		name    string
		data    string
		want    procStat
		wantErr bool
	}{
		{"plain", "42 (sleep) S 7 42 42 0 -1 4194560" + tail, procStat{State: 'S', PPID: 7, PGRP: 42, StartTicks: 98765}, false},
		{"name with spaces and parens", "42 (a) b ) c) Z 1 5 5 0 -1 4194560" + tail, procStat{State: 'Z', PPID: 1, PGRP: 5, StartTicks: 98765}, false},
		{"no name", "42 sleep S 7 42", procStat{}, true},
		{"truncated", "42 (sleep) S 7 42 42", procStat{}, true},
		{"bad number", "42 (sleep) S x 42 42 0 -1 4194560" + tail, procStat{}, true},
		{"empty", "", procStat{}, true},
	}
	// Against the real file, whose command name has no spaces here:
	// starttime is the 22nd field.
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.ParseUint(strings.Fields(string(data))[21], 10, 64)
	if got, err := parseProcStat(data); err != nil || got.StartTicks != want || got.PPID != os.Getppid() {
		t.Errorf("parse /proc/self/stat = %+v, %v; want starttime %d ppid %d", got, err, want, os.Getppid())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("42 (sleep) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 1000"))
	f.Add([]byte("1 ((x)) R 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseProcStat(data) // must not panic
	})
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "prog")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	noexec := filepath.Join(dir, "bin", "data")
	os.WriteFile(noexec, nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "other", "prog"), 0o755) // a directory named like the program
	tests := []struct {
		name, argv0, path, dir, want string
		is                           error
	}{
		{"in path", "prog", filepath.Join(dir, "other") + ":" + filepath.Join(dir, "bin"), "", exe, nil},
		{"relative path entry", "prog", "bin", dir, exe, nil},
		{"absolute", exe, "", "", exe, nil},
		{"relative to dir", "./bin/prog", "", dir, exe, nil},
		{"missing", "nope", filepath.Join(dir, "bin"), "", "", ErrExecutableNotFound},
		{"missing absolute", filepath.Join(dir, "nope"), "", "", "", ErrExecutableNotFound},
		{"not executable", "data", filepath.Join(dir, "bin"), "", "", fs.ErrPermission},
		{"path through a file", exe + "/x", "", "", "", ErrExecutableNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookPath(tt.argv0, tt.path, tt.dir)
			if tt.is != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("lookPath = %q, %v; want %v", got, err, tt.is)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("lookPath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	env, path := processEnv([]string{"A=1"})
	if path != DefaultPath || len(env) != 2 || env[1] != "PATH="+DefaultPath {
		t.Errorf("no PATH: %v %q", env, path)
	}
	env, path = processEnv([]string{"PATH=/a", "B=2", "PATH=/b"})
	if path != "/b" || len(env) != 3 {
		t.Errorf("last PATH wins: %v %q", env, path)
	}
}

func TestWaitPidfd(t *testing.T) {
	start := func(arg string) (*exec.Cmd, uint64) {
		cmd := exec.Command("sleep", arg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		st, err := readProcStat(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		return cmd, st.StartTicks
	}
	short, ticks := start("0.1")
	handled, err := waitPidfd(context.Background(), short.Process.Pid, ticks)
	if !handled || err != nil {
		t.Fatalf("waitPidfd = %v, %v; want the pidfd path to handle it", handled, err)
	}
	if alive(short.Process.Pid, ticks) {
		t.Error("waitPidfd returned before the process exited")
	}
	short.Wait()

	long, ticks := start("30")
	defer long.Wait()
	defer long.Process.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if handled, err := waitPidfd(ctx, long.Process.Pid, ticks); !handled || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitPidfd with deadline = %v, %v", handled, err)
	}
	// A recorded start time that does not match is a different process.
	if handled, err := waitPidfd(context.Background(), long.Process.Pid, ticks+1); !handled || err != nil {
		t.Errorf("waitPidfd on a recycled pid = %v, %v; want immediate return", handled, err)
	}
}
