package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// BulkResult is one bulk transfer.
type BulkResult struct {
	Bytes    int64
	Duration time.Duration
	// Truncated is set when the budget ended the transfer early.
	Truncated bool
}

// BytesPerSecond is the transfer rate.
func (b BulkResult) BytesPerSecond() float64 {
	if b.Duration <= 0 {
		return 0
	}
	return float64(b.Bytes) / b.Duration.Seconds()
}

// Bulk asks the bulk server at addr for n bytes (an 8-byte big-endian
// count, see package backend) and reads them, timing from the request to
// the last byte. The budget ends a slow transfer early; the rate is then
// taken over what arrived.
func Bulk(ctx context.Context, addr string, n int64, budget time.Duration) (BulkResult, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return BulkResult{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(n))
	start := time.Now()
	_ = c.SetDeadline(start.Add(budget))
	if _, err := c.Write(req[:]); err != nil {
		return BulkResult{}, fmt.Errorf("send bulk request to %s: %w", addr, err)
	}
	buf := make([]byte, 256<<10)
	var got int64
	for got < n {
		k, err := c.Read(buf)
		got += int64(k)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && got > 0 {
				return BulkResult{Bytes: got, Duration: time.Since(start), Truncated: true}, nil
			}
			if errors.Is(err, io.EOF) && got == n {
				break
			}
			return BulkResult{Bytes: got, Duration: time.Since(start)}, fmt.Errorf("read bulk from %s after %d bytes: %w", addr, got, err)
		}
	}
	return BulkResult{Bytes: got, Duration: time.Since(start)}, nil
}
