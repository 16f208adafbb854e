package forward

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// stats are the counters of one target, shown on its status line.
type stats struct {
	open    atomic.Int64 // client connections being served
	waiting atomic.Int64 // client connections waiting for a ready endpoint
	total   atomic.Int64 // client connections accepted
	failed  atomic.Int64 // client connections refused or failed on the pod side

	mu      sync.Mutex
	lastErr string // guarded by mu
	apiErr  string // guarded by mu: why the API server cannot be reached now, "" when it can
}

func (s *stats) setLastErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// setAPIErr records the API server's state ("" when it answers) and
// returns the previous one.
func (s *stats) setAPIErr(msg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.apiErr
	s.apiErr = msg
	return prev
}

// statusSnapshot is everything a status line shows about one target.
type statusSnapshot struct {
	Target  string
	Listen  string // "127.0.0.1:8080->80,..."
	Synced  bool
	Ready   int
	Total   int
	Open    int64
	Waiting int64
	Conns   int64
	Failed  int64
	LastErr string
	APIErr  string
	Gone    string
}

// statusLine renders one target for a terminal, cut to width runes when width > 0.
func statusLine(s statusSnapshot, width int) string {
	var b strings.Builder
	b.WriteString(s.Target)
	if s.Listen != "" {
		b.WriteString(" " + s.Listen)
	}
	if s.Synced {
		fmt.Fprintf(&b, "  ready %d/%d", s.Ready, s.Total)
	} else {
		b.WriteString("  ready ?")
	}
	fmt.Fprintf(&b, "  open %d  total %d  failed %d", s.Open, s.Conns, s.Failed)
	if s.Waiting > 0 {
		fmt.Fprintf(&b, "  waiting %d", s.Waiting)
	}
	switch {
	case s.APIErr != "":
		b.WriteString("  | API server unreachable, retrying: " + s.APIErr)
	case s.Gone != "":
		b.WriteString("  | " + s.Gone)
	case s.Synced && s.Ready == 0:
		b.WriteString("  | no ready endpoint")
	}
	if s.LastErr != "" {
		b.WriteString("  | last error: " + s.LastErr)
	}
	return truncate(b.String(), width)
}

// statusAttrs renders one target as log attributes, for stderr that is not a terminal.
func statusAttrs(s statusSnapshot) []any {
	attrs := []any{"target", s.Target, "listen", s.Listen}
	if s.Synced {
		attrs = append(attrs, "ready", s.Ready, "endpoints", s.Total)
	} else {
		attrs = append(attrs, "ready", "unknown")
	}
	attrs = append(attrs, "open", s.Open, "total", s.Conns, "failed", s.Failed)
	if s.Waiting > 0 {
		attrs = append(attrs, "waiting", s.Waiting)
	}
	if s.APIErr != "" {
		attrs = append(attrs, "api", "unreachable, retrying: "+s.APIErr)
	}
	if s.Gone != "" {
		attrs = append(attrs, "gone", s.Gone)
	}
	if s.LastErr != "" {
		attrs = append(attrs, "last_error", s.LastErr)
	}
	return attrs
}

func truncate(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	if width == 1 {
		return string(r[:1])
	}
	return string(r[:width-1]) + "…"
}

// ConsoleConfig says what kind of stderr a Console writes to.
type ConsoleConfig struct {
	// TTY selects one repainting status line per target; otherwise status
	// changes are written as plain log lines.
	TTY bool
	// Width cuts status lines to the terminal width so that repainting
	// never wraps; 0 leaves them whole.
	Width int
}

// Console shares stderr between log lines and the live status lines. Give
// it to the logger as its writer: on a terminal it lifts the status block,
// writes the log line above it and repaints. It is safe for concurrent use.
type Console struct {
	cfg ConsoleConfig
	mu  sync.Mutex
	w   io.Writer // guarded by mu
	// lines is the status block on screen (TTY only); guarded by mu.
	lines []string
}

// NewConsole returns a Console writing to w.
func NewConsole(w io.Writer, cfg ConsoleConfig) *Console {
	return &Console{cfg: cfg, w: w}
}

// TTY reports whether the console repaints status lines.
func (c *Console) TTY() bool { return c.cfg.TTY }

// Write writes a log line (or several) above the status block.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cfg.TTY {
		return c.w.Write(p)
	}
	c.erase()
	n, err := c.w.Write(p)
	c.paint()
	return n, err
}

// printAbove writes p to w, which may share the terminal with the console
// (stdout), with the status block lifted so that repainting cannot erase it.
func (c *Console) printAbove(w io.Writer, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.TTY {
		c.erase()
		defer c.paint()
	}
	_, _ = w.Write(p)
}

// setStatus replaces the status block (TTY only).
func (c *Console) setStatus(lines []string) {
	if !c.cfg.TTY {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.erase()
	c.lines = lines
	c.paint()
}

// release leaves the last status block on screen and stops repainting it.
func (c *Console) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = nil
}

func (c *Console) erase() {
	if len(c.lines) > 0 {
		// Back to column 0 (a typed ^C moves the cursor), up over the
		// block, then clear to the end of the screen.
		fmt.Fprintf(c.w, "\r\x1b[%dA\x1b[J", len(c.lines))
	}
}

func (c *Console) paint() {
	// One column short of the width, so that no terminal wraps a full line.
	width := c.cfg.Width - 1
	for _, l := range c.lines {
		fmt.Fprintf(c.w, "%s\n", truncate(l, width))
	}
}

// logStatus writes the non-terminal form of a status line.
func logStatus(log *slog.Logger, s statusSnapshot) {
	log.Info("status", statusAttrs(s)...)
}
