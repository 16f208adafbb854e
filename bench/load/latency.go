package load

import (
	"context"
	"fmt"
	"time"
)

// LatencyResult is the outcome of one latency run.
type LatencyResult struct {
	Samples  []time.Duration
	Errors   int
	FirstErr error
	Elapsed  time.Duration
}

// LatencyKeepAlive sends up to n GET path requests one after another on one
// connection to addr (reconnecting after an error) and times each from
// write to the last byte of the response. It stops after budget.
func LatencyKeepAlive(ctx context.Context, addr, path string, n int, budget time.Duration) LatencyResult {
	var res LatencyResult
	start := time.Now()
	end := start.Add(budget)
	var c *Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	res.Samples = make([]time.Duration, 0, n)
	for i := 0; i < n && time.Now().Before(end) && ctx.Err() == nil; i++ {
		if c == nil {
			var err error
			if c, err = Dial(ctx, addr, 2*time.Second); err != nil {
				res.fail(err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		t0 := time.Now()
		status, _, err := c.Get(path, false, t0.Add(5*time.Second))
		d := time.Since(t0)
		if err == nil && status != 200 {
			err = fmt.Errorf("status %d", status)
		}
		if err != nil {
			res.fail(err)
			c.Close()
			c = nil
			continue
		}
		res.Samples = append(res.Samples, d)
	}
	res.Elapsed = time.Since(start)
	return res
}

// LatencyNewConn sends up to n GET path requests, each on a new connection
// (Connection: close), and times each from the dial to the last byte of the
// response. It stops after budget.
func LatencyNewConn(ctx context.Context, addr, path string, n int, budget time.Duration) LatencyResult {
	var res LatencyResult
	start := time.Now()
	end := start.Add(budget)
	res.Samples = make([]time.Duration, 0, n)
	for i := 0; i < n && time.Now().Before(end) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		status, _, err := GetOnce(ctx, addr, path, 5*time.Second)
		d := time.Since(t0)
		if err == nil && status != 200 {
			err = fmt.Errorf("status %d", status)
		}
		if err != nil {
			res.fail(err)
			continue
		}
		res.Samples = append(res.Samples, d)
	}
	res.Elapsed = time.Since(start)
	return res
}

func (r *LatencyResult) fail(err error) {
	r.Errors++
	if r.FirstErr == nil {
		r.FirstErr = err
	}
}
