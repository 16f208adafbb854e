package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/berth-project/berth/bench/load"
)

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func median(xs []float64) float64 { return load.Median(xs) }

func floats(xs []float64, prec int) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.*f", prec, x))
	}
	return strings.Join(parts, ", ")
}

func fileSizeMB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(st.Size()) / 1e6
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

type execCmd = exec.Cmd

func newExec(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
