package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is a fixed-rate stream of GET requests, as a steady client of a
// Service would send: open loop (requests leave on schedule whether or not
// earlier ones answered), at most Concurrency in flight.
type Stream struct {
	Name string
	// URL is requested as is, e.g. http://127.96.0.10:80/hostname.
	URL  string
	Rate int
	// KeepAlive reuses connections through Go's net/http client, which
	// retries an idempotent request once when a reused idle connection turns
	// out closed, as real clients do; without it every request dials anew.
	KeepAlive   bool
	Timeout     time.Duration
	Concurrency int
}

// Failure is one failed request.
type Failure struct {
	// At is the time since the stream started.
	At   time.Duration
	Kind string
}

// StreamResult counts what a Stream saw.
type StreamResult struct {
	Name  string
	Start time.Time
	// Duration is how long the stream ran.
	Duration time.Duration
	Sent, OK int64
	// Failed counts requests that errored or answered other than 200;
	// Dropped counts requests not sent because Concurrency were in flight
	// (each of those is a request a real client would have seen wait).
	Failed, Dropped int64
	Errors          map[string]int
	// Hosts counts answers by body (the pod's hostname for /hostname).
	Hosts    map[string]int64
	Failures []Failure
}

// Run sends requests until ctx is done. A ctx without deadline is an
// error: every stream is bounded.
func (s Stream) Run(ctx context.Context) (StreamResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		return StreamResult{}, fmt.Errorf("stream %s: context has no deadline", s.Name)
	}
	if s.Rate <= 0 {
		return StreamResult{}, fmt.Errorf("stream %s: rate %d must be positive", s.Name, s.Rate)
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 64
	}
	if s.Timeout <= 0 {
		s.Timeout = 2 * time.Second
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: s.Timeout}).DialContext,
		DisableKeepAlives:   !s.KeepAlive,
		MaxIdleConnsPerHost: s.Concurrency,
		MaxIdleConns:        s.Concurrency,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: s.Timeout}
	res := StreamResult{Name: s.Name, Start: time.Now(), Errors: map[string]int{}, Hosts: map[string]int64{}}
	var mu sync.Mutex // guards res maps and Failures
	var sent, ok, failed, dropped atomic.Int64
	sem := make(chan struct{}, s.Concurrency)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(s.Rate))
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			dropped.Add(1)
			continue
		}
		sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			host, err := s.once(client)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed.Add(1)
				kind := ErrorKind(err)
				if strings.Contains(err.Error(), "Client.Timeout") {
					kind = "timeout"
				}
				res.Errors[kind]++
				if len(res.Failures) < 10000 {
					res.Failures = append(res.Failures, Failure{At: time.Since(res.Start), Kind: kind})
				}
				return
			}
			ok.Add(1)
			res.Hosts[host]++
		}()
	}
	wg.Wait()
	res.Duration = time.Since(res.Start)
	res.Sent, res.OK, res.Failed, res.Dropped = sent.Load(), ok.Load(), failed.Load(), dropped.Load()
	return res, nil
}

func (s Stream) once(client *http.Client) (string, error) {
	resp, err := client.Get(s.URL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}

// Lost is Failed plus Dropped: the requests a client did not get answered.
func (r StreamResult) Lost() int64 { return r.Failed + r.Dropped }

// FailureWindow returns the first and last failure times, and false when
// nothing failed.
func (r StreamResult) FailureWindow() (first, last time.Duration, any bool) {
	if len(r.Failures) == 0 {
		return 0, 0, false
	}
	first, last = r.Failures[0].At, r.Failures[0].At
	for _, f := range r.Failures {
		first, last = min(first, f.At), max(last, f.At)
	}
	return first, last, true
}

// ErrorsString lists the error kinds with their counts.
func (r StreamResult) ErrorsString() string {
	if len(r.Errors) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range r.Errors {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	return strings.Join(sortStrings(parts), ", ")
}
