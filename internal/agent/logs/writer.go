package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults, as the kubelet (containerLogMaxFiles) and containerd
// (max_container_log_line_size) use them.
const (
	DefaultMaxFiles     = 5
	DefaultMaxLineBytes = 16 * 1024
)

// rotatedSuffixFormat names rotated files <path>.<suffix>. It extends the
// kubelet's "20060102-150405" with nanoseconds because this writer rotates on
// size as soon as a file is full, which can happen many times a second; the
// fixed width keeps text order equal to time order.
const rotatedSuffixFormat = "20060102-150405.000000000"

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Path is the current log file. Its directory is created if missing.
	Path string
	// MaxBytes rotates the current file before a record would make it larger
	// than this. Zero or negative disables rotation.
	MaxBytes int64
	// MaxFiles is how many files are kept, the current one included (as the
	// kubelet's containerLogMaxFiles). Zero means DefaultMaxFiles; with
	// rotation enabled it must be at least 2.
	MaxFiles int
	// MaxLineBytes splits longer lines into P records of this many message
	// bytes. Zero means DefaultMaxLineBytes.
	MaxLineBytes int
	// Now stamps records; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Writer appends CRI log records to one container's log file, rotating it by
// size. It is safe for concurrent use; each stream gets its own StreamWriter
// so that partial lines of stdout and stderr do not mix.
type Writer struct {
	cfg WriterConfig

	mu         sync.Mutex
	f          *os.File // guarded by mu; nil once closed
	size       int64    // guarded by mu
	lastSuffix string   // guarded by mu: suffix of the newest rotated file
}

// NewWriter opens (appending) or creates cfg.Path.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if cfg.Path == "" {
		return nil, errors.New("log writer: empty path")
	}
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.MaxBytes > 0 && cfg.MaxFiles < 2 {
		return nil, fmt.Errorf("log writer for %s: MaxFiles %d must be at least 2 when rotating", cfg.Path, cfg.MaxFiles)
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MaxLineBytes < 0 {
		return nil, fmt.Errorf("log writer for %s: negative MaxLineBytes %d", cfg.Path, cfg.MaxLineBytes)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory for %s: %w", cfg.Path, err)
	}
	w := &Writer{cfg: cfg}
	if err := w.open(); err != nil {
		return nil, err
	}
	if rotated, err := rotatedFiles(cfg.Path); err == nil && len(rotated) > 0 {
		w.lastSuffix = strings.TrimPrefix(rotated[len(rotated)-1], cfg.Path+".")
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", w.cfg.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat log %s: %w", w.cfg.Path, err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Stream returns a writer for one stream. Each StreamWriter buffers at most
// one incomplete line; Close it to write that remainder.
func (w *Writer) Stream(s Stream) *StreamWriter {
	return &StreamWriter{w: w, s: s}
}

// Copy writes everything read from r as stream s until r ends, then writes the
// unterminated remainder, if any, as a full line. It keeps reading after a
// write error, so that a full disk never blocks the process on the other end
// of r, and returns the first error.
func (w *Writer) Copy(s Stream, r io.Reader) error {
	sw := w.Stream(s)
	buf := make([]byte, 32*1024)
	var firstErr error
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := sw.Write(buf[:n]); werr != nil && firstErr == nil {
				firstErr = werr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && firstErr == nil {
				firstErr = fmt.Errorf("read %s: %w", s, err)
			}
			break
		}
	}
	if err := sw.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// Close closes the file. Writes after Close fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// writeRecord stamps and appends one record with a single write, so a reader
// never sees records of two streams interleaved inside a line.
func (w *Writer) writeRecord(buf []byte, s Stream, partial bool, msg []byte) ([]byte, error) {
	buf = appendRecord(buf[:0], w.cfg.Now(), s, partial, msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return buf, fmt.Errorf("log %s: %w", w.cfg.Path, os.ErrClosed)
	}
	var rotateErr error
	if w.cfg.MaxBytes > 0 && w.size > 0 && w.size+int64(len(buf)) > w.cfg.MaxBytes {
		// Write the record even if rotation failed: losing rotation is
		// better than losing logs.
		rotateErr = w.rotate()
	}
	n, err := w.f.Write(buf)
	w.size += int64(n)
	if err != nil {
		return buf, fmt.Errorf("write log %s: %w", w.cfg.Path, err)
	}
	return buf, rotateErr
}

// rotate renames the current file aside, starts a new one and drops the
// oldest rotated files beyond MaxFiles. If it fails, w.f stays a usable file
// (the current or the renamed one). Called with mu held.
func (w *Writer) rotate() error {
	suffix := w.cfg.Now().UTC().Format(rotatedSuffixFormat)
	if suffix <= w.lastSuffix {
		// The clock went back or did not move: keep names increasing.
		t, err := time.Parse(rotatedSuffixFormat, w.lastSuffix)
		if err != nil {
			t = w.cfg.Now().UTC()
		}
		suffix = t.Add(time.Nanosecond).Format(rotatedSuffixFormat)
	}
	rotated := w.cfg.Path + "." + suffix
	if err := os.Rename(w.cfg.Path, rotated); err != nil {
		return fmt.Errorf("rotate log %s: %w", w.cfg.Path, err)
	}
	w.lastSuffix = suffix
	old := w.f
	if err := w.open(); err != nil {
		// Keep writing to the renamed file rather than nowhere.
		return err
	}
	old.Close()
	names, err := rotatedFiles(w.cfg.Path)
	if err != nil {
		return err
	}
	for len(names) > w.cfg.MaxFiles-1 {
		if err := os.Remove(names[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old log %s: %w", names[0], err)
		}
		names = names[1:]
	}
	return nil
}

// rotatedFiles lists the rotated files of path, oldest first. Only names with
// a timestamp suffix count (ours, or the kubelet's shorter one), so that
// temporary or unrelated files next to the log are never read or removed.
func rotatedFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list rotated logs of %s: %w", path, err)
	}
	var names []string
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || e.IsDir() || !isRotatedSuffix(suffix) {
			continue
		}
		names = append(names, filepath.Join(dir, e.Name()))
	}
	sort.Strings(names)
	return names, nil
}

func isRotatedSuffix(s string) bool {
	for _, layout := range []string{rotatedSuffixFormat, "20060102-150405"} {
		if len(s) == len(layout) {
			if _, err := time.Parse(layout, s); err == nil {
				return true
			}
		}
	}
	return false
}

// StreamWriter splits what one stream writes into CRI records.
type StreamWriter struct {
	w *Writer
	s Stream

	mu      sync.Mutex
	pending []byte // guarded by mu: start of a line not yet terminated
	scratch []byte // guarded by mu: record encoding buffer
}

// Write records every complete line of p, and chunks of MaxLineBytes of a line
// that grows past it as partial records. It returns len(p) unless writing to
// the file failed.
func (sw *StreamWriter) Write(p []byte) (int, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	limit := sw.w.cfg.MaxLineBytes
	n := len(p)
	var err error
	emit := func(partial bool, msg []byte) {
		var werr error
		sw.scratch, werr = sw.w.writeRecord(sw.scratch, sw.s, partial, msg)
		if werr != nil && err == nil {
			err = werr
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			sw.pending = append(sw.pending, p...)
			p = nil
			// Hold up to a full chunk: a line of exactly limit bytes whose
			// newline comes in the next write stays a single F record.
			for len(sw.pending) > limit {
				emit(true, sw.pending[:limit])
				sw.pending = sw.pending[:copy(sw.pending, sw.pending[limit:])]
			}
			break
		}
		line := p[:i]
		p = p[i+1:]
		if len(sw.pending) > 0 {
			sw.pending = append(sw.pending, line...)
			line = sw.pending
		}
		for len(line) > limit {
			emit(true, line[:limit])
			line = line[limit:]
		}
		emit(false, line)
		sw.pending = sw.pending[:0]
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close writes a pending unterminated line as a full record (the stream ended,
// so the line is as complete as it will get). The Writer stays open.
func (sw *StreamWriter) Close() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if len(sw.pending) == 0 {
		return nil
	}
	var err error
	sw.scratch, err = sw.w.writeRecord(sw.scratch, sw.s, false, sw.pending)
	sw.pending = sw.pending[:0]
	return err
}
