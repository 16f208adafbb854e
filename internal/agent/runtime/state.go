package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files in a container's state directory, <StateDir>/<ID>/. Each is written
// once, whole (temporary file + rename), by the party named:
//
//	spec.json   Runtime.Start   the ContainerSpec
//	shim.json   shim            the shim's pid and start time, first thing
//	start.json  shim            the workload's pid, start time, start wall clock
//	exit.json   shim            how the workload ended; written after its logs
//	                            are flushed, so the exit implies complete logs.
//	                            Runtime writes it instead (Lost) when the shim
//	                            died first, never replacing one that exists.
//	shim.log    shim            the shim's own diagnostics and stderr
const (
	specFile  = "spec.json"
	shimFile  = "shim.json"
	startFile = "start.json"
	exitFile  = "exit.json"
	shimLog   = "shim.log"
)

// Records name processes by pid, start time (clock ticks since boot) and
// boot ID: after a reboot the same pid can come back even with the same
// start time.
type shimRecord struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"startTicks"`
	BootID     string `json:"bootID,omitempty"`
}

type startRecord struct {
	PID        int       `json:"pid"`
	StartTicks uint64    `json:"startTicks"`
	BootID     string    `json:"bootID,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
}

type exitRecord struct {
	ExitCode   int       `json:"exitCode"`
	Signal     string    `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	Lost       bool      `json:"lost,omitempty"`
	// Error says why the process failed to start or why its exit is unknown.
	Error string `json:"error,omitempty"`
}

// writeJSON writes v to dir/name atomically. With exclusive it fails with
// os.ErrExist rather than replace an existing file.
func writeJSON(dir, name string, v any, exclusive bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	dst := filepath.Join(dir, name)
	if exclusive {
		err = os.Link(tmp.Name(), dst)
	} else {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// readJSON reads dir/name into v; ok is false if the file does not exist.
func readJSON(dir, name string, v any) (ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", filepath.Join(dir, name), err)
	}
	return true, nil
}

// record is everything on disk about one container.
type record struct {
	spec  ContainerSpec
	shim  *shimRecord
	start *startRecord
	exit  *exitRecord
}

func loadRecord(dir string) (*record, error) {
	rec := &record{}
	ok, err := readJSON(dir, specFile, &rec.spec)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	var sh shimRecord
	if ok, err := readJSON(dir, shimFile, &sh); err != nil {
		return nil, err
	} else if ok {
		rec.shim = &sh
	}
	var st startRecord
	if ok, err := readJSON(dir, startFile, &st); err != nil {
		return nil, err
	} else if ok {
		rec.start = &st
	}
	if err := rec.loadExit(dir); err != nil {
		return nil, err
	}
	return rec, nil
}

func (rec *record) loadExit(dir string) error {
	var ex exitRecord
	ok, err := readJSON(dir, exitFile, &ex)
	if err != nil {
		return err
	}
	if ok {
		rec.exit = &ex
	}
	return nil
}
