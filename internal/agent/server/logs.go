package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/berth-project/berth/internal/agent/logs"
)

func schemaResource(r string) schema.GroupResource { return schema.GroupResource{Resource: r} }

// serveLogs serves kubectl logs: the query is a v1.PodLogOptions.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	opts, err := parseLogOptions(r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	lo, err := logOptions(opts, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	ref := ContainerRef{PodRef: podRef(r), Container: r.PathValue("container")}
	lf, err := s.cfg.Backend.ContainerLog(r.Context(), ref, opts.Previous)
	if err != nil {
		writeError(w, err)
		return
	}
	lo.Exited = lf.Exited
	w.Header().Set("Content-Type", "text/plain")
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	err = logs.ReadLogs(r.Context(), lf.Path, lo, fw)
	switch {
	case err == nil, errors.Is(err, os.ErrNotExist) && !fw.wrote, r.Context().Err() != nil:
		// A container that never wrote has no log yet: an empty answer.
	case !fw.wrote:
		writeError(w, err)
	default:
		s.log.Warn("serve container log", "pod", ref.PodRef.String(), "container", ref.Container, "err", err)
	}
}

// parseLogOptions reads a v1.PodLogOptions from its query parameters.
// (client-go's scheme has no query conversion for it: that lives in the
// Kubernetes API server.)
func parseLogOptions(q url.Values) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{Container: q.Get("container")}
	var err error
	boolean := func(name string, dst *bool) {
		if v := q.Get(name); v != "" && err == nil {
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				err = apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q: want true or false", name, v))
			}
			*dst = b
		}
	}
	integer := func(name string) *int64 {
		v := q.Get(name)
		if v == "" || err != nil {
			return nil
		}
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			err = apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q: want an integer", name, v))
			return nil
		}
		return &n
	}
	boolean("follow", &o.Follow)
	boolean("previous", &o.Previous)
	boolean("timestamps", &o.Timestamps)
	boolean("insecureSkipTLSVerifyBackend", &o.InsecureSkipTLSVerifyBackend)
	o.SinceSeconds = integer("sinceSeconds")
	o.TailLines = integer("tailLines")
	o.LimitBytes = integer("limitBytes")
	if v := q.Get("sinceTime"); v != "" && err == nil {
		t, perr := time.Parse(time.RFC3339, v)
		if perr != nil {
			err = apierrors.NewBadRequest(fmt.Sprintf("invalid sinceTime %q: want an RFC 3339 time", v))
		}
		mt := metav1.NewTime(t)
		o.SinceTime = &mt
	}
	if v, ok := q["stream"]; ok && len(v) > 0 {
		o.Stream = &v[0]
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// logOptions translates and checks the API's options as the kubelet does.
func logOptions(o *corev1.PodLogOptions, now time.Time) (logs.Options, error) {
	bad := func(msg string) (logs.Options, error) { return logs.Options{}, apierrors.NewBadRequest(msg) }
	lo := logs.Options{Follow: o.Follow, Timestamps: o.Timestamps, TailLines: o.TailLines, LimitBytes: o.LimitBytes}
	if o.TailLines != nil && *o.TailLines < 0 {
		return bad("tailLines must be a non-negative integer")
	}
	if o.LimitBytes != nil && *o.LimitBytes < 1 {
		return bad("limitBytes must be a positive integer")
	}
	if o.SinceSeconds != nil && o.SinceTime != nil {
		return bad("at most one of sinceTime or sinceSeconds may be specified")
	}
	if o.SinceSeconds != nil {
		if *o.SinceSeconds < 1 {
			return bad("sinceSeconds must be a positive integer")
		}
		t := now.Add(-time.Duration(*o.SinceSeconds) * time.Second)
		lo.SinceTime = &t
	}
	if o.SinceTime != nil {
		t := o.SinceTime.Time
		lo.SinceTime = &t
	}
	if o.Stream != nil {
		switch *o.Stream {
		case corev1.LogStreamStdout:
			lo.Stream = logs.Stdout
		case corev1.LogStreamStderr:
			lo.Stream = logs.Stderr
		case corev1.LogStreamAll:
			lo.Stream = logs.AllStreams
		default:
			return bad(fmt.Sprintf("invalid stream %q: want Stdout, Stderr or All", *o.Stream))
		}
		if lo.TailLines != nil && lo.Stream != logs.AllStreams {
			return bad("tailLines is incompatible with a stream other than All")
		}
	}
	return lo, nil
}

// flushWriter pushes every write to the client at once, so that a follow
// shows lines as they come.
type flushWriter struct {
	w     http.ResponseWriter
	f     http.Flusher
	wrote bool
}

func (fw *flushWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		fw.wrote = true
	}
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}
