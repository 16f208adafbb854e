package load

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IdleResult is what holding many idle connections through a target saw.
type IdleResult struct {
	Wanted, Opened int
	OpenDuration   time.Duration
	DialErrors     map[string]int
	// Verified counts held connections that answered a request after the
	// hold; VerifyErrors counts the others by cause.
	Verified     int
	VerifyErrors map[string]int
}

// Failed is the number of wanted connections that did not end verified.
func (r IdleResult) Failed() int { return r.Wanted - r.Verified }

// HoldIdle opens n connections to addr (an HTTP server with /echo),
// concurrency at a time, holds them all idle for hold (calling during once
// they are all open, e.g. to sample the server), then sends one
// GET /echo?msg=i on each and checks the answer.
func HoldIdle(ctx context.Context, addr string, n, concurrency int, hold time.Duration, during func()) IdleResult {
	res := IdleResult{Wanted: n, DialErrors: map[string]int{}, VerifyErrors: map[string]int{}}
	conns := make([]*Conn, n)
	var mu sync.Mutex
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := Dial(ctx, addr, 5*time.Second)
				if err != nil {
					mu.Lock()
					res.DialErrors[ErrorKind(err)]++
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	res.OpenDuration = time.Since(start)
	for _, c := range conns {
		if c != nil {
			res.Opened++
		}
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if during != nil {
		during()
	}
	select {
	case <-ctx.Done():
	case <-time.After(hold):
	}
	next.Store(0)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c := conns[i]
				if c == nil {
					continue
				}
				msg := strconv.Itoa(i)
				status, body, err := c.Get("/echo?msg="+msg, false, time.Now().Add(10*time.Second))
				if err == nil && (status != 200 || strings.TrimSpace(string(body)) != msg) {
					err = fmt.Errorf("answer %d %q", status, body)
				}
				mu.Lock()
				if err != nil {
					res.VerifyErrors[ErrorKind(err)]++
				} else {
					res.Verified++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// CountsString renders counts by cause, most frequent first.
func CountsString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	type kv struct {
		k string
		v int
	}
	var s []kv
	for k, v := range m {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v || (s[i].v == s[j].v && s[i].k < s[j].k) })
	var parts []string
	for _, e := range s {
		parts = append(parts, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return strings.Join(parts, ", ")
}

func sortStrings(s []string) []string { sort.Strings(s); return s }
