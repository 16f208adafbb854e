package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValueString(t *testing.T) {
	tests := []struct {
		v    Value
		want string
	}{
		{Dur(42 * time.Microsecond), "42 µs"},
		{Dur(1500 * time.Microsecond), "1500 µs"},
		{Dur(12500 * time.Microsecond), "12.5 ms"},
		{Dur(95 * time.Second), "95 s"},
		{MB(81_500_000), "81.5 MB"},
		{MBps(2.5e9), "2500 MB/s"},
		{Count(10000), "10000"},
		{Value{1.234, UnitPct}, "1.23%"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestRowRatioAndVerdict(t *testing.T) {
	var s Section
	r := s.Add("throughput", MBps(900e6)).WithPeer("direct", MBps(1000e6)).Check("≥ 90% of direct", true, "", "")
	if r.Ratio < 0.899 || r.Ratio > 0.901 || r.Status != StatusMet {
		t.Errorf("row = %+v", r)
	}
	m := s.Add("p50", Micros(50*time.Microsecond)).WithPeer("other unit", Millis(time.Millisecond)).Check("≤ 30 µs", false, "20 µs", "a reason")
	if m.Ratio != 0 {
		t.Errorf("ratio across units = %v, want none", m.Ratio)
	}
	if got := m.verdict(true); !strings.Contains(got, "missed by 20 µs: a reason") {
		t.Errorf("verdict = %q", got)
	}
	k := s.AddText("pf", "").Skip("≥ x", "needs the node agent")
	if got := k.verdict(true); !strings.Contains(got, "needs the node agent") || k.valueText() != "—" {
		t.Errorf("skip verdict %q value %q", got, k.valueText())
	}
}

func TestMarkdownAndJSON(t *testing.T) {
	r := &Report{Date: "2026-12-01", Mode: "smoke", Command: "go run ./bench -smoke", Started: time.Now(),
		Machine: []Fact{{"CPU", "x | y"}}}
	s := r.Section("dp", "Data path")
	s.Describe("How it is measured.")
	s.Add("Service throughput", MBps(1e9)).Check("≥ 90%", true, "", "")
	s.AddText("HAProxy", "").Skip("", "skipped in smoke")
	r.Section("x", "Broken").Error = "boom\ndetail"
	md := r.Markdown()
	for _, want := range []string{"# berth benchmark report, 2026-12-01", "x \\| y", "| Data path | Service throughput | 1000 MB/s | ≥ 90% | ✅ met |", "**Failed:** `boom`", "1 met, 0 missed, 0 skipped"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	p := filepath.Join(t.TempDir(), "r.json")
	if err := r.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Sections) != 2 {
		t.Fatalf("JSON round trip: %v, %+v", err, back)
	}
}

func TestCharts(t *testing.T) {
	dir := t.TempDir()
	var a, b []time.Duration
	for i := 0; i < 2000; i++ {
		a = append(a, time.Duration(50+i%97)*time.Microsecond)
		b = append(b, time.Duration(80+i%301)*time.Microsecond)
	}
	p := filepath.Join(dir, "lat.png")
	if err := LatencyChart(p, []Panel{{Title: "keep-alive", Series: []Series{{"direct", a}, {"service", b}, {"empty", nil}}}, {Title: "new", Series: []Series{{"x", b}}}}); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "soak.png")
	if err := SeriesChart(q, []SeriesPanel{{Title: "goroutines", YLabel: "n", Series: []TimeSeries{{Name: "g", X: []float64{0, 1, 2}, Y: []float64{10, 11, 10}}}}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, q} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Errorf("%s is not a PNG (%d bytes, %v)", f, len(b), err)
		}
	}
	if err := LatencyChart(filepath.Join(dir, "none.png"), nil); err == nil {
		t.Error("a chart without panels was drawn")
	}
}

func TestPercentileX(t *testing.T) {
	for _, tt := range []struct{ p, x float64 }{{0, 0}, {0.9, 1}, {0.99, 2}, {0.999, 3}} {
		if got := percentileX(tt.p); got < tt.x-1e-9 || got > tt.x+1e-9 {
			t.Errorf("percentileX(%v) = %v, want %v", tt.p, got, tt.x)
		}
	}
}

func TestFailures(t *testing.T) {
	r := &Report{}
	ok := r.Section("ok", "fine")
	ok.Add("a", Value{V: 1})
	ok.AddText("skipped one", "").Skip("", "needs root")
	bad := r.Section("bad", "broken")
	bad.Error = "server did not start\nlog tail"
	bad.AddText("bulk throughput, x", "failed: connection refused")
	got := r.Failures()
	want := []string{"bad: server did not start", "bad: bulk throughput, x: failed: connection refused"}
	if !slices.Equal(got, want) {
		t.Errorf("Failures() = %q, want %q", got, want)
	}
}
