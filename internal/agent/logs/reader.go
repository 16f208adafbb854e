package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

// Options selects what ReadLogs prints. It mirrors v1.PodLogOptions.
type Options struct {
	// Follow keeps printing what is appended, across rotations, until ctx
	// ends or Exited is closed.
	Follow bool
	// TailLines prints only the last n lines (a line split into partial
	// records counts once); nil prints everything, 0 nothing but what a
	// follow sees appended.
	TailLines *int64
	// SinceTime skips lines stamped before it.
	SinceTime *time.Time
	// LimitBytes stops after printing this many bytes.
	LimitBytes *int64
	// Timestamps prefixes each line with its RFC3339Nano time and a space,
	// as kubectl logs --timestamps shows it.
	Timestamps bool
	// Stream selects Stdout, Stderr or AllStreams ("all" is accepted too).
	Stream Stream
	// Exited, when closed, tells a follow that the container has exited: it
	// prints what is left and returns nil. A nil channel follows until ctx ends.
	Exited <-chan struct{}
}

// followPoll is how often a follow looks for appended data. Polling a stat
// is cheap next to the kubelet's fsnotify machinery, and 200ms is below what
// a person watching kubectl logs -f notices.
const followPoll = 200 * time.Millisecond

// ReadLogs prints the messages of the log at path (with its rotated files,
// oldest first) to w. A malformed record is skipped, as the kubelet does. It
// returns an error wrapping os.ErrNotExist if there is no log at all, and
// ctx.Err() if ctx ends a follow.
func ReadLogs(ctx context.Context, path string, opts Options, w io.Writer) error {
	if path == "" {
		return errors.New("read logs: empty path")
	}
	if !validStream(opts.Stream) {
		return fmt.Errorf("read logs %s: unknown stream %q", path, opts.Stream)
	}
	r := &reader{
		path:      path,
		opts:      opts,
		out:       bufio.NewWriterSize(w, 32*1024),
		remaining: -1,
		br:        bufio.NewReaderSize(nil, 64*1024),
		atStart:   [2]bool{true, true},
	}
	if opts.LimitBytes != nil {
		if *opts.LimitBytes <= 0 {
			return nil
		}
		r.remaining = *opts.LimitBytes
	}
	defer r.closeAll()

	if err := r.refresh(); err != nil {
		return err
	}
	if len(r.files) == 0 {
		return fmt.Errorf("read logs %s: %w", path, os.ErrNotExist)
	}
	if opts.TailLines != nil && *opts.TailLines >= 0 {
		if err := r.computeTail(*opts.TailLines); err != nil {
			return err
		}
	}
	if err := r.readFiles(ctx, r.files); err != nil {
		return err
	}
	if !opts.Follow || r.stop {
		return r.flush()
	}

	ticker := time.NewTicker(followPoll)
	defer ticker.Stop()
	exited := false
	for !r.stop && !exited {
		if err := r.flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-opts.Exited:
			// The shim has flushed and closed the log before the exit is
			// observable, so one more pass reads everything.
			exited = true
		case <-ticker.C:
		}
		if err := r.followPass(ctx); err != nil {
			return err
		}
	}
	return r.flush()
}

// pos is a record's position: which file (in open order) and the offset.
type pos struct {
	seq int
	off int64
}

func (a pos) before(b pos) bool {
	return a.seq < b.seq || (a.seq == b.seq && a.off < b.off)
}

type logFile struct {
	seq int
	f   *os.File
	fi  os.FileInfo // from f.Stat at open: identity for os.SameFile
	off int64       // next unread byte: EOF or the start of an incomplete line
}

type reader struct {
	path      string
	opts      Options
	out       *bufio.Writer
	remaining int64 // bytes LimitBytes still allows; -1 for no limit
	br        *bufio.Reader

	files   []*logFile // open files in log order; each stays open so its inode cannot be reused
	nextSeq int

	tail    bool
	cutoff  [2]pos  // with TailLines, records of a stream before this are skipped
	atStart [2]bool // the next record of the stream starts a line
	keep    [2]bool // the line in progress passed SinceTime
	line    []byte  // output scratch
	stop    bool    // LimitBytes reached
}

func (r *reader) closeAll() {
	for _, lf := range r.files {
		lf.f.Close()
	}
	r.files = nil
}

func (r *reader) flush() error {
	if err := r.out.Flush(); err != nil {
		return fmt.Errorf("write logs of %s: %w", r.path, err)
	}
	return nil
}

// refresh brings r.files in line with the directory: rotated files oldest
// first, then the current file; files no longer listed (deleted by rotation)
// come first since they are the oldest. New files are opened; names are not
// trusted for identity because rotation renames the file being read.
func (r *reader) refresh() error {
	names, err := rotatedFiles(r.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read logs %s: %w", r.path, err)
	}
	names = append(names, r.path)
	seen := make(map[*logFile]bool, len(r.files))
	var listed []*logFile
	for _, name := range names {
		lf := r.lookup(name)
		if lf == nil {
			f, err := os.Open(name)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // rotated or pruned since the listing
				}
				return fmt.Errorf("read logs: %w", err)
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return fmt.Errorf("read logs: %w", err)
			}
			if lf = r.byInfo(fi); lf != nil {
				f.Close()
			} else {
				lf = &logFile{seq: r.nextSeq, f: f, fi: fi}
				r.nextSeq++
			}
		}
		if !seen[lf] {
			seen[lf] = true
			listed = append(listed, lf)
		}
	}
	var gone []*logFile
	for _, lf := range r.files {
		if !seen[lf] {
			gone = append(gone, lf)
		}
	}
	r.files = append(gone, listed...)
	return nil
}

func (r *reader) lookup(name string) *logFile {
	fi, err := os.Stat(name)
	if err != nil {
		return nil
	}
	return r.byInfo(fi)
}

func (r *reader) byInfo(fi os.FileInfo) *logFile {
	for _, lf := range r.files {
		if os.SameFile(lf.fi, fi) {
			return lf
		}
	}
	return nil
}

// followPass reads what was appended since the last pass, taking in files
// that rotation created and dropping files that rotation deleted once their
// remainder is read.
func (r *reader) followPass(ctx context.Context) error {
	if n := len(r.files); n > 0 {
		if fi, err := os.Stat(r.path); err == nil && os.SameFile(fi, r.files[n-1].fi) {
			// No rotation since the last pass: the common case.
			return r.readFiles(ctx, r.files[n-1:])
		}
	}
	if err := r.refresh(); err != nil {
		return err
	}
	if err := r.readFiles(ctx, r.files); err != nil {
		return err
	}
	keep := r.files[:0]
	for _, lf := range r.files {
		if fi, err := lf.f.Stat(); err == nil && nlink(fi) == 0 {
			lf.f.Close()
			continue
		}
		keep = append(keep, lf)
	}
	r.files = keep
	return nil
}

func (r *reader) readFiles(ctx context.Context, files []*logFile) error {
	for _, lf := range files {
		if r.stop {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.readFile(lf); err != nil {
			return err
		}
	}
	return nil
}

// readFile prints the complete records of lf from its offset on. An
// incomplete last line is left for the next pass: the writer may be in the
// middle of it.
func (r *reader) readFile(lf *logFile) error {
	r.br.Reset(io.NewSectionReader(lf.f, lf.off, math.MaxInt64-lf.off))
	var long []byte
	for !r.stop {
		chunk, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read log %s: %w", lf.f.Name(), err)
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		start := lf.off
		lf.off += int64(len(line))
		if err := r.emit(pos{lf.seq, start}, line[:len(line)-1]); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) emit(p pos, line []byte) error {
	rec, err := parseRecord(line)
	if err != nil || !r.opts.Stream.matches(rec.stream) {
		return nil
	}
	i := streamIndex(rec.stream)
	starts := r.atStart[i]
	r.atStart[i] = !rec.partial
	if r.tail && p.before(r.cutoff[i]) {
		return nil
	}
	if starts {
		r.keep[i] = r.opts.SinceTime == nil || !rec.ts.Before(*r.opts.SinceTime)
	}
	if !r.keep[i] {
		return nil
	}
	out := r.line[:0]
	if r.opts.Timestamps && starts {
		out = rec.ts.AppendFormat(out, timeFormat)
		out = append(out, ' ')
	}
	out = append(out, rec.msg...)
	if !rec.partial {
		out = append(out, '\n')
	}
	r.line = out
	if r.remaining >= 0 && int64(len(out)) >= r.remaining {
		out = out[:r.remaining]
		r.stop = true
	}
	if _, err := r.out.Write(out); err != nil {
		return fmt.Errorf("write logs of %s: %w", r.path, err)
	}
	if r.remaining >= 0 {
		r.remaining -= int64(len(out))
	}
	return nil
}

// computeTail finds, per stream, where the last n lines begin, scanning the
// files backwards so that tailing a large log reads only its end. Lines of
// the two streams can interleave (a stdout line split into partial records
// around a stderr line), so the result is a cutoff per stream: the lines
// kept of one stream are always a suffix of that stream's records.
func (r *reader) computeTail(n int64) error {
	r.tail = true
	last := r.files[len(r.files)-1]
	end, err := completeEnd(last)
	if err != nil {
		return err
	}
	r.cutoff = [2]pos{{last.seq, end}, {last.seq, end}}
	if n == 0 {
		return nil
	}
	var count int64
	var open, closed [2]bool
	more := func() bool { return count < n || open[0] || open[1] }
	for k := len(r.files) - 1; k >= 0 && more(); k-- {
		lf := r.files[k]
		err := scanBackward(lf, func(off int64, line []byte) bool {
			rec, err := parseRecord(line)
			if err != nil || !r.opts.Stream.matches(rec.stream) {
				return true
			}
			i := streamIndex(rec.stream)
			if !rec.partial && open[i] {
				open[i] = false // this F ends the line before the one we hold
			}
			if !open[i] {
				if closed[i] || count == n {
					closed[i] = true
					return more()
				}
				count++
				open[i] = true
			}
			r.cutoff[i] = pos{lf.seq, off}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// completeEnd is the offset just past the last complete line of lf.
func completeEnd(lf *logFile) (int64, error) {
	fi, err := lf.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat log %s: %w", lf.f.Name(), err)
	}
	buf := make([]byte, 4096)
	for end := fi.Size(); end > 0; {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		start := end - n
		if _, err := lf.f.ReadAt(buf[:n], start); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read log %s: %w", lf.f.Name(), err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// scanBackward calls fn with each complete line of lf (without its newline)
// and its offset, last line first, until fn returns false.
func scanBackward(lf *logFile, fn func(off int64, line []byte) bool) error {
	end, err := completeEnd(lf)
	if err != nil {
		return err
	}
	const block = 32 * 1024
	// buf holds the file's bytes [bufStart, end); it always ends with '\n'.
	var buf []byte
	bufStart := end
	for {
		if len(buf) > 0 {
			if j := bytes.LastIndexByte(buf[:len(buf)-1], '\n'); j >= 0 || bufStart == 0 {
				start := j + 1
				if !fn(bufStart+int64(start), buf[start:len(buf)-1]) {
					return nil
				}
				buf = buf[:start]
				continue
			}
		}
		if bufStart == 0 {
			return nil
		}
		n := int64(block)
		if n > bufStart {
			n = bufStart
		}
		chunk := make([]byte, n, n+int64(len(buf)))
		if _, err := lf.f.ReadAt(chunk, bufStart-n); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read log %s: %w", lf.f.Name(), err)
		}
		buf = append(chunk, buf...)
		bufStart -= n
	}
}
