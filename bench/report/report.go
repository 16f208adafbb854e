package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"
)

// Value is a measured quantity with its unit.
type Value struct {
	V    float64 `json:"v"`
	Unit string  `json:"unit"`
}

// Units.
const (
	UnitMicros = "µs"
	UnitMillis = "ms"
	UnitSecs   = "s"
	UnitMB     = "MB"
	UnitMBps   = "MB/s"
	UnitCount  = ""
	UnitPct    = "%"
)

// Dur is a duration, in µs below 10 ms, in ms below 10 s, else in s.
func Dur(d time.Duration) Value {
	switch {
	case d < 10*time.Millisecond:
		return Value{float64(d) / float64(time.Microsecond), UnitMicros}
	case d < 10*time.Second:
		return Value{float64(d) / float64(time.Millisecond), UnitMillis}
	default:
		return Value{d.Seconds(), UnitSecs}
	}
}

// Micros is a duration in µs whatever its size (for rows compared
// side by side).
func Micros(d time.Duration) Value { return Value{float64(d) / float64(time.Microsecond), UnitMicros} }

// Millis is a duration in ms whatever its size.
func Millis(d time.Duration) Value { return Value{float64(d) / float64(time.Millisecond), UnitMillis} }

// MB is a size in megabytes (10^6 bytes).
func MB(bytes float64) Value { return Value{bytes / 1e6, UnitMB} }

// MBps is a rate in megabytes per second.
func MBps(bytesPerSec float64) Value { return Value{bytesPerSec / 1e6, UnitMBps} }

// Count is a plain number.
func Count(n float64) Value { return Value{n, UnitCount} }

// String formats v with sensible precision.
func (v Value) String() string {
	var s string
	a := math.Abs(v.V)
	switch {
	case v.V == math.Trunc(v.V) && a < 1e9:
		s = fmt.Sprintf("%.0f", v.V)
	case a >= 100:
		s = fmt.Sprintf("%.0f", v.V)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v.V)
	default:
		s = fmt.Sprintf("%.2f", v.V)
	}
	if v.Unit == "" {
		return s
	}
	if v.Unit == UnitPct {
		return s + "%"
	}
	return s + " " + v.Unit
}

// Status is a row's verdict.
type Status string

// Verdicts.
const (
	StatusInfo    Status = ""
	StatusMet     Status = "met"
	StatusMissed  Status = "missed"
	StatusSkipped Status = "skipped"
)

// Row is one figure.
type Row struct {
	Figure string `json:"figure"`
	Value  *Value `json:"value,omitempty"`
	// Text replaces Value in the table when set (e.g. "0 of 12,000").
	Text      string  `json:"text,omitempty"`
	Peer      string  `json:"peer,omitempty"`
	PeerValue *Value  `json:"peer_value,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Target    string  `json:"target,omitempty"`
	Status    Status  `json:"status,omitempty"`
	// By says how far a missed target was missed; Why what causes it.
	By   string `json:"by,omitempty"`
	Why  string `json:"why,omitempty"`
	Note string `json:"note,omitempty"`
}

// WithPeer sets the peer and the ratio value/peer.
func (r *Row) WithPeer(name string, v Value) *Row {
	r.Peer, r.PeerValue = name, &v
	if r.Value != nil && v.V != 0 && r.Value.Unit == v.Unit {
		r.Ratio = r.Value.V / v.V
	}
	return r
}

// Check sets the target text and the verdict; by says by how much it was
// missed and why the cause, both shown only when missed.
func (r *Row) Check(target string, met bool, by, why string) *Row {
	r.Target = target
	if met {
		r.Status = StatusMet
		return r
	}
	r.Status, r.By, r.Why = StatusMissed, by, why
	return r
}

// Skip marks the figure as not measured, saying why.
func (r *Row) Skip(target, why string) *Row {
	r.Target, r.Status, r.Why = target, StatusSkipped, why
	return r
}

// Image is a chart of a section.
type Image struct {
	// Path is relative to the report's directory.
	Path string `json:"path"`
	Alt  string `json:"alt"`
}

// Section is one benchmark.
type Section struct {
	ID       string        `json:"id"`
	Title    string        `json:"title"`
	Method   []string      `json:"method,omitempty"`
	Rows     []*Row        `json:"rows,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
	Images   []Image       `json:"images,omitempty"`
	Skipped  string        `json:"skipped,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`

	mu sync.Mutex // guards Rows and Notes for benchmarks that add from goroutines
}

// Add appends a row with a value and returns it for WithPeer and Check.
func (s *Section) Add(figure string, v Value) *Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Row{Figure: figure, Value: &v}
	s.Rows = append(s.Rows, r)
	return r
}

// AddText appends a row whose value is text.
func (s *Section) AddText(figure, text string) *Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Row{Figure: figure, Text: text}
	s.Rows = append(s.Rows, r)
	return r
}

// Notef appends a note.
func (s *Section) Notef(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Describe appends a paragraph on how the figures are measured.
func (s *Section) Describe(format string, args ...any) {
	s.Method = append(s.Method, fmt.Sprintf(format, args...))
}

// Fact is one line of the machine table.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Report is one run.
type Report struct {
	Date     string        `json:"date"`
	Mode     string        `json:"mode"`
	Command  string        `json:"command"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Machine  []Fact        `json:"machine"`
	Notes    []string      `json:"notes,omitempty"`
	Sections []*Section    `json:"sections"`
}

// Section returns a new section added to the report.
func (r *Report) Section(id, title string) *Section {
	s := &Section{ID: id, Title: title}
	r.Sections = append(r.Sections, s)
	return s
}

// Failures lists the benchmarks that ended with an error and the figures
// whose measurement failed ("section: figure: text"), in report order.
func (r *Report) Failures() []string {
	var out []string
	for _, s := range r.Sections {
		if s.Error != "" {
			out = append(out, s.ID+": "+firstLineOf(s.Error))
		}
		for _, row := range s.Rows {
			if strings.HasPrefix(row.Text, "failed") {
				out = append(out, s.ID+": "+row.Figure+": "+row.Text)
			}
		}
	}
	return out
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# berth benchmark report, %s\n\n", r.Date)
	fmt.Fprintf(&b, "Mode: **%s**. Started %s, took %s. Command: `%s`.\n\n", r.Mode, r.Started.UTC().Format("2006-01-02 15:04:05 MST"), r.Duration.Round(time.Second), r.Command)
	b.WriteString("Every figure below comes from this one run on this one machine; peers were measured side by side in the same run, so compare ratios rather than absolute values across runs.\n\n")
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	for _, f := range r.Machine {
		fmt.Fprintf(&b, "| %s | %s |\n", f.Name, cell(f.Value))
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("## Targets\n\n| benchmark | figure | value | target | result |\n|---|---|---|---|---|\n")
	met, missed, skipped := 0, 0, 0
	for _, s := range r.Sections {
		for _, row := range s.Rows {
			if row.Target == "" {
				continue
			}
			switch row.Status {
			case StatusMet:
				met++
			case StatusMissed:
				missed++
			case StatusSkipped:
				skipped++
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(s.Title), cell(row.Figure), cell(row.valueText()), cell(row.Target), cell(row.verdict(false)))
		}
	}
	fmt.Fprintf(&b, "\n%d met, %d missed, %d skipped.\n\n", met, missed, skipped)
	for _, s := range r.Sections {
		s.markdown(&b)
	}
	return b.String()
}

func (s *Section) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "## %s\n\n", s.Title)
	for _, m := range s.Method {
		fmt.Fprintf(b, "%s\n\n", m)
	}
	if s.Skipped != "" {
		fmt.Fprintf(b, "**Skipped:** %s\n\n", s.Skipped)
	}
	if s.Error != "" {
		fmt.Fprintf(b, "**Failed:** `%s`\n\n", cell(firstLine(s.Error)))
		if strings.Contains(s.Error, "\n") {
			fmt.Fprintf(b, "<details><summary>error detail</summary>\n\n```\n%s\n```\n</details>\n\n", strings.TrimSpace(s.Error))
		}
	}
	if len(s.Rows) > 0 {
		b.WriteString("| figure | berth | peer | peer's value | ratio | target | result |\n|---|---|---|---|---|---|---|\n")
		for _, r := range s.Rows {
			peer, pv, ratio := "", "", ""
			if r.Peer != "" {
				peer = r.Peer
			}
			if r.PeerValue != nil {
				pv = r.PeerValue.String()
			}
			if r.Ratio != 0 {
				ratio = fmt.Sprintf("%.2f×", r.Ratio)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(r.valueText()), cell(peer), cell(pv), ratio, cell(r.Target), cell(r.verdict(true)))
		}
		b.WriteString("\n")
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	if len(s.Notes) > 0 {
		b.WriteString("\n")
	}
	for _, img := range s.Images {
		fmt.Fprintf(b, "![%s](%s)\n\n", img.Alt, img.Path)
	}
	if s.Duration > 0 {
		fmt.Fprintf(b, "_This benchmark took %s._\n\n", s.Duration.Round(100*time.Millisecond))
	}
}

func (r *Row) valueText() string {
	if r.Text != "" {
		return r.Text
	}
	if r.Value != nil && r.Status != StatusSkipped {
		return r.Value.String()
	}
	return "—"
}

func (r *Row) verdict(long bool) string {
	var s string
	switch r.Status {
	case StatusMet:
		s = "✅ met"
	case StatusMissed:
		s = "❌ missed"
		if r.By != "" {
			s += " by " + r.By
		}
		if long && r.Why != "" {
			s += ": " + r.Why
		}
	case StatusSkipped:
		s = "⏭ skipped"
		if r.Why != "" {
			s += ": " + r.Why
		}
	}
	if long && r.Note != "" {
		if s != "" {
			s += "; "
		}
		s += r.Note
	}
	return s
}

func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
