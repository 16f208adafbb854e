package logs

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stream names one of a container's output streams.
type Stream string

// The streams a record can come from. AllStreams selects both when reading.
const (
	Stdout     Stream = "stdout"
	Stderr     Stream = "stderr"
	AllStreams Stream = ""
)

// timeFormat is what the writer puts in the file and what ReadLogs prints for
// Timestamps: the kubelet's fixed-width RFC3339Nano, so that timestamps line up
// and sort as text. Parsing accepts any RFC3339Nano (other runtimes trim zeros).
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// record is one parsed log line.
type record struct {
	ts      time.Time
	stream  Stream
	partial bool
	msg     []byte // aliases the parsed line
}

// appendRecord appends the encoded record, newline included, to dst.
func appendRecord(dst []byte, ts time.Time, s Stream, partial bool, msg []byte) []byte {
	dst = ts.UTC().AppendFormat(dst, timeFormat)
	dst = append(dst, ' ')
	dst = append(dst, s...)
	if partial {
		dst = append(dst, " P "...)
	} else {
		dst = append(dst, " F "...)
	}
	dst = append(dst, msg...)
	return append(dst, '\n')
}

var errMalformed = errors.New("malformed CRI log record")

// parseRecord parses one line of a CRI log file, without its trailing newline.
// Tags after the first (the format allows "F:x" for extensions) are ignored,
// and any first tag other than P means a full line, as the kubelet reads it.
func parseRecord(line []byte) (record, error) {
	var r record
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, fmt.Errorf("%w: no timestamp", errMalformed)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return r, fmt.Errorf("%w: timestamp: %v", errMalformed, err)
	}
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, fmt.Errorf("%w: no stream", errMalformed)
	}
	switch s := Stream(line[:i]); s {
	case Stdout, Stderr:
		r.stream = s
	default:
		return r, fmt.Errorf("%w: unknown stream %q", errMalformed, s)
	}
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, fmt.Errorf("%w: no tag", errMalformed)
	}
	tag := line[:i]
	if j := bytes.IndexByte(tag, ':'); j >= 0 {
		tag = tag[:j]
	}
	r.ts = ts
	r.partial = string(tag) == "P"
	r.msg = line[i+1:]
	return r, nil
}

// streamIndex maps a record's stream to a small array index.
func streamIndex(s Stream) int {
	if s == Stderr {
		return 1
	}
	return 0
}

// validStream reports whether s is a stream a reader may select.
func validStream(s Stream) bool {
	switch s {
	case AllStreams, "all", Stdout, Stderr:
		return true
	}
	return false
}

func (s Stream) matches(r Stream) bool {
	return s == AllStreams || s == "all" || s == r
}
