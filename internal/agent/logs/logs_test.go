package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var base = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock returns base, base+1s, base+2s, ... one step per call.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := base.Add(time.Duration(n) * time.Second)
		n++
		return t
	}
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		wantErr bool
		ts      time.Time
		stream  Stream
		partial bool
		msg     string
	}{
		{name: "full", line: "2016-10-06T00:17:09.669794202Z stdout F log content 1", ts: time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC), stream: Stdout, msg: "log content 1"},
		{name: "partial stderr", line: "2016-10-06T00:17:09.669794203Z stderr P log content 2", ts: time.Date(2016, 10, 6, 0, 17, 9, 669794203, time.UTC), stream: Stderr, partial: true, msg: "log content 2"},
		{name: "trimmed timestamp with zone", line: "2016-10-06T02:17:09.5+02:00 stdout F x", ts: time.Date(2016, 10, 6, 0, 17, 9, 500000000, time.UTC), stream: Stdout, msg: "x"},
		{name: "extra tags", line: "2016-10-06T00:17:09Z stdout P:x:y msg", ts: time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC), stream: Stdout, partial: true, msg: "msg"},
		{name: "empty message", line: "2016-10-06T00:17:09Z stdout F ", ts: time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC), stream: Stdout, msg: ""},
		{name: "message keeps spaces", line: "2016-10-06T00:17:09Z stderr F  a  b ", ts: time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC), stream: Stderr, msg: " a  b "},
		{name: "no delimiter", line: "garbage", wantErr: true},
		{name: "bad timestamp", line: "yesterday stdout F x", wantErr: true},
		{name: "bad stream", line: "2016-10-06T00:17:09Z stdin F x", wantErr: true},
		{name: "no tag", line: "2016-10-06T00:17:09Z stdout F", wantErr: true},
		{name: "empty", line: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRecord([]byte(tt.line))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseRecord(%q) = %+v, want error", tt.line, r)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRecord(%q): %v", tt.line, err)
			}
			if !r.ts.Equal(tt.ts) || r.stream != tt.stream || r.partial != tt.partial || string(r.msg) != tt.msg {
				t.Errorf("parseRecord(%q) = {%v %s %v %q}, want {%v %s %v %q}", tt.line, r.ts, r.stream, r.partial, r.msg, tt.ts, tt.stream, tt.partial, tt.msg)
			}
		})
	}
}

func TestAppendRecordFormat(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 120000000, time.FixedZone("x", 3600))
	got := string(appendRecord(nil, ts, Stderr, true, []byte("hi there")))
	want := "2024-05-06T06:08:09.120000000Z stderr P hi there\n"
	if got != want {
		t.Errorf("appendRecord = %q, want %q", got, want)
	}
}

// FuzzParseRecord checks that the parser never panics and that what it
// accepts survives an encode/parse round trip.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("2016-10-06T00:17:09.669794202Z stdout F log content 1"))
	f.Add([]byte("2016-10-06T00:17:09Z stderr P:a "))
	f.Add([]byte("x y z"))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseRecord(line)
		if err != nil {
			return
		}
		if bytes.IndexByte(r.msg, '\n') >= 0 {
			return // a record never holds a newline; the reader splits on it first
		}
		enc := appendRecord(nil, r.ts, r.stream, r.partial, r.msg)
		r2, err := parseRecord(enc[:len(enc)-1])
		if err != nil {
			t.Fatalf("re-parse %q: %v", enc, err)
		}
		if !r2.ts.Equal(r.ts) || r2.stream != r.stream || r2.partial != r.partial || !bytes.Equal(r2.msg, r.msg) {
			t.Fatalf("round trip of %q changed it: %+v vs %+v", line, r, r2)
		}
	})
}

type rec struct {
	stream Stream
	tag    string
	msg    string
}

func readRecords(t *testing.T, path string) []rec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("unterminated record %q", line)
		}
		r, err := parseRecord([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		tag := "F"
		if r.partial {
			tag = "P"
		}
		out = append(out, rec{r.stream, tag, string(r.msg)})
	}
	return out
}

func TestStreamWriterSplitsLines(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []rec
	}{
		{"one line", []string{"ab\n"}, []rec{{Stdout, "F", "ab"}}},
		{"exactly the limit", []string{"abcd\n"}, []rec{{Stdout, "F", "abcd"}}},
		{"limit then newline later", []string{"abcd", "\n"}, []rec{{Stdout, "F", "abcd"}}},
		{"long line", []string{"abcdef\n"}, []rec{{Stdout, "P", "abcd"}, {Stdout, "F", "ef"}}},
		{"two chunks exactly", []string{"abcdefgh\n"}, []rec{{Stdout, "P", "abcd"}, {Stdout, "F", "efgh"}}},
		{"split writes", []string{"ab", "cd", "e", "\n"}, []rec{{Stdout, "P", "abcd"}, {Stdout, "F", "e"}}},
		{"empty line", []string{"\n"}, []rec{{Stdout, "F", ""}}},
		{"several lines", []string{"a\nb\nc"}, []rec{{Stdout, "F", "a"}, {Stdout, "F", "b"}, {Stdout, "F", "c"}}},
		{"unterminated long", []string{"abcdefghi"}, []rec{{Stdout, "P", "abcd"}, {Stdout, "P", "efgh"}, {Stdout, "F", "i"}}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			w, err := NewWriter(WriterConfig{Path: path, MaxLineBytes: 4})
			if err != nil {
				t.Fatal(err)
			}
			sw := w.Stream(Stdout)
			for _, s := range tt.writes {
				if n, err := sw.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if err := sw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got := readRecords(t, path)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("records = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriterConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []WriterConfig{
		{},
		{Path: filepath.Join(dir, "a.log"), MaxBytes: 100, MaxFiles: 1},
		{Path: filepath.Join(dir, "b.log"), MaxLineBytes: -1},
	} {
		if _, err := NewWriter(cfg); err == nil {
			t.Errorf("NewWriter(%+v) succeeded, want error", cfg)
		}
	}
}

func TestWriterCopyInterleavesStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod", "c", "0.log")
	w, err := NewWriter(WriterConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in strings.Builder
			for i := range 200 {
				fmt.Fprintf(&in, "%s-%d\n", s, i)
			}
			if err := w.Copy(s, strings.NewReader(in.String())); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	w.Close()
	next := map[Stream]int{}
	for _, r := range readRecords(t, path) {
		if want := fmt.Sprintf("%s-%d", r.stream, next[r.stream]); r.msg != want || r.tag != "F" {
			t.Fatalf("record %+v, want %s F", r, want)
		}
		next[r.stream]++
	}
	if next[Stdout] != 200 || next[Stderr] != 200 {
		t.Errorf("counts = %v, want 200 each", next)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// An unrelated file next to the log must survive rotation.
	if err := os.WriteFile(path+".tmp", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(WriterConfig{Path: path, MaxBytes: 200, MaxFiles: 3, Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	sw := w.Stream(Stdout)
	for i := range 50 {
		fmt.Fprintf(sw, "line-%02d\n", i)
	}
	w.Close()

	rotated, err := rotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 2 {
		t.Fatalf("rotated files = %v, want 2 (MaxFiles 3 with the current)", rotated)
	}
	for _, p := range append(rotated, path) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 200 {
			t.Errorf("%s is %d bytes, over MaxBytes 200", p, fi.Size())
		}
	}
	if _, err := os.Stat(path + ".tmp"); err != nil {
		t.Errorf("unrelated file removed: %v", err)
	}

	// What is left is the newest lines, in order, ending with the last one.
	var out bytes.Buffer
	if err := ReadLogs(context.Background(), path, Options{}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) < 5 || lines[len(lines)-1] != "line-49" {
		t.Fatalf("read %q", out.String())
	}
	for i := 1; i < len(lines); i++ {
		var a, b int
		fmt.Sscanf(lines[i-1], "line-%d", &a)
		fmt.Sscanf(lines[i], "line-%d", &b)
		if b != a+1 {
			t.Fatalf("lines out of order or missing: %q", lines)
		}
	}

	// Tail crosses from the current file into the rotated ones.
	var tail bytes.Buffer
	n := int64(len(lines) - 1)
	if err := ReadLogs(context.Background(), path, Options{TailLines: &n}, &tail); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(lines[1:], "\n") + "\n"; tail.String() != want {
		t.Errorf("tail %d = %q, want %q", n, tail.String(), want)
	}
}

// writeSample writes a log in which a stdout line is split into partial
// records around a stderr line, one second per record from base.
func writeSample(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := NewWriter(WriterConfig{Path: path, MaxLineBytes: 4, Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	out, errs := w.Stream(Stdout), w.Stream(Stderr)
	for _, step := range []struct {
		sw *StreamWriter
		s  string
	}{
		{out, "one\n"},   // +0s F
		{errs, "err1\n"}, // +1s F
		{out, "abcde"},   // +2s P abcd
		{errs, "err2\n"}, // +3s F
		{out, "fg\n"},    // +4s F efg
		{out, "two\n"},   // +5s F
		{errs, "err3\n"}, // +6s F
	} {
		if _, err := step.sw.Write([]byte(step.s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return path
}

func TestReadLogsOptions(t *testing.T) {
	path := writeSample(t)
	i64 := func(v int64) *int64 { return &v }
	at := func(sec int) *time.Time { v := base.Add(time.Duration(sec) * time.Second); return &v }
	ts := func(sec int) string { return base.Add(time.Duration(sec) * time.Second).Format(timeFormat) }
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all", Options{}, "one\nerr1\nabcderr2\nefg\ntwo\nerr3\n"},
		{"all by name", Options{Stream: "all"}, "one\nerr1\nabcderr2\nefg\ntwo\nerr3\n"},
		{"stdout", Options{Stream: Stdout}, "one\nabcdefg\ntwo\n"},
		{"stderr", Options{Stream: Stderr}, "err1\nerr2\nerr3\n"},
		{"tail 0", Options{TailLines: i64(0)}, ""},
		{"tail 1", Options{TailLines: i64(1)}, "err3\n"},
		{"tail 2", Options{TailLines: i64(2)}, "two\nerr3\n"},
		{"tail 3 keeps the split line whole", Options{TailLines: i64(3)}, "abcdefg\ntwo\nerr3\n"},
		{"tail more than there is", Options{TailLines: i64(100)}, "one\nerr1\nabcderr2\nefg\ntwo\nerr3\n"},
		{"tail negative means all", Options{TailLines: i64(-1), Stream: Stderr}, "err1\nerr2\nerr3\n"},
		{"tail 2 stdout", Options{TailLines: i64(2), Stream: Stdout}, "abcdefg\ntwo\n"},
		{"tail 1 stderr", Options{TailLines: i64(1), Stream: Stderr}, "err3\n"},
		{"since drops a line that began before", Options{SinceTime: at(3)}, "err2\ntwo\nerr3\n"},
		{"since and tail", Options{SinceTime: at(5), TailLines: i64(3)}, "two\nerr3\n"},
		{"limit", Options{LimitBytes: i64(6)}, "one\ner"},
		{"limit exact", Options{LimitBytes: i64(4)}, "one\n"},
		{"limit zero", Options{LimitBytes: i64(0)}, ""},
		{"timestamps once per line", Options{Stream: Stdout, Timestamps: true},
			ts(0) + " one\n" + ts(2) + " abcdefg\n" + ts(5) + " two\n"},
		{"timestamps with tail", Options{Timestamps: true, TailLines: i64(1)}, ts(6) + " err3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := ReadLogs(context.Background(), path, tt.opts, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestReadLogsErrors(t *testing.T) {
	dir := t.TempDir()
	err := ReadLogs(context.Background(), filepath.Join(dir, "none.log"), Options{}, &bytes.Buffer{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing log: err = %v, want ErrNotExist", err)
	}
	path := writeSample(t)
	if err := ReadLogs(context.Background(), path, Options{Stream: "stdin"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown stream accepted")
	}
	if err := ReadLogs(context.Background(), "", Options{}, &bytes.Buffer{}); err == nil {
		t.Error("empty path accepted")
	}
}

func TestReadLogsSkipsMalformedAndIncomplete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	content := "2024-01-01T00:00:00Z stdout F a\nnot a record\n2024-01-01T00:00:01Z stdout F b\n2024-01-01T00:00:02Z stdout F partial-write"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ReadLogs(context.Background(), path, Options{}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nb\n" {
		t.Errorf("got %q", out.String())
	}
	one := int64(1)
	out.Reset()
	if err := ReadLogs(context.Background(), path, Options{TailLines: &one}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "b\n" {
		t.Errorf("tail 1 got %q", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := NewWriter(WriterConfig{Path: path, MaxBytes: 300, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	sw := w.Stream(Stdout)
	fmt.Fprintf(sw, "line-000\n")

	exited := make(chan struct{})
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- ReadLogs(context.Background(), path, Options{Follow: true, Exited: exited}, out)
	}()

	var want strings.Builder
	want.WriteString("line-000\n")
	for batch := range 8 {
		for i := range 5 {
			line := fmt.Sprintf("line-%d%02d", batch+1, i)
			fmt.Fprintf(sw, "%s\n", line)
			want.WriteString(line + "\n")
		}
		// Wait for the follower to catch up before the next batch, so that
		// rotation never prunes a file it has not read yet.
		w := want.String()
		waitFor(t, "follower to catch up", func() bool { return out.String() == w })
	}
	rotated, _ := rotatedFiles(path)
	if len(rotated) == 0 {
		t.Fatal("test wrote too little to rotate")
	}
	// An unterminated line written before exit is printed as a full line.
	sw.Write([]byte("last"))
	sw.Close()
	w.Close()
	want.WriteString("last\n")
	close(exited)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end after exit")
	}
	if out.String() != want.String() {
		t.Errorf("followed %q, want %q", out.String(), want.String())
	}
}

func TestFollowEndsWithContext(t *testing.T) {
	path := writeSample(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- ReadLogs(ctx, path, Options{Follow: true, Stream: Stderr}, out) }()
	waitFor(t, "history", func() bool { return out.String() == "err1\nerr2\nerr3\n" })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow ignored ctx")
	}
}

func TestFollowAlreadyExited(t *testing.T) {
	path := writeSample(t)
	exited := make(chan struct{})
	close(exited)
	var out bytes.Buffer
	if err := ReadLogs(context.Background(), path, Options{Follow: true, Stream: Stdout, Exited: exited}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\nabcdefg\ntwo\n" {
		t.Errorf("got %q", out.String())
	}
}
