package apiserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Field validation levels, as the fieldValidation query parameter.
const (
	fieldValidationStrict = "Strict"
	fieldValidationWarn   = "Warn"
	fieldValidationIgnore = "Ignore"
)

func fieldValidation(r *http.Request) (string, error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "":
		return fieldValidationWarn, nil
	case fieldValidationStrict, fieldValidationWarn, fieldValidationIgnore:
		return v, nil
	default:
		return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation %q is not one of Ignore, Warn, Strict", v))
	}
}

// readBody reads a request body within the size limit; too large is 413.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", mbe.Limit))
		}
		return nil, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err))
	}
	return data, nil
}

// decodeInto decodes a JSON or YAML body into into, checking that its kind is
// the expected one and handling unknown and duplicate fields per validation.
// It returns warnings for the Warn level.
func decodeInto(r *http.Request, data []byte, gvk schema.GroupVersionKind, into runtime.Object, validation string) ([]string, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, apierrors.NewBadRequest("the request body is empty; send a " + gvk.Kind + " object")
	}
	if loc := hugeExponent.FindIndex(data); loc != nil && !strings.HasPrefix(r.Header.Get("Content-Type"), contentTypeProtobuf) {
		// apimachinery's Quantity parser and comparisons take time and
		// memory that grow with the exponent (a known upstream problem);
		// no valid Kubernetes value needs one this large.
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the value %s has an exponent too large for a Kubernetes quantity or number (at most 3 digits)", truncate(strings.Trim(string(data[loc[0]:loc[1]]), "\"': \t,}]\n"), 40)))
	}
	var ser runtime.Decoder = strictJSON
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, contentTypeProtobuf):
		ser = protoSer
	case strings.HasPrefix(ct, "application/yaml") || (!looksLikeJSON(data) && !strings.HasPrefix(ct, "application/json")):
		ser = strictYAML
	}
	obj, got, err := ser.Decode(data, &gvk, into)
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml: %v", err))
		}
		if sde, ok := runtime.AsStrictDecodingError(err); ok {
			for _, e := range sde.Errors() {
				warnings = append(warnings, e.Error())
			}
		} else {
			warnings = []string{err.Error()}
		}
		if validation == fieldValidationStrict {
			return nil, apierrors.NewBadRequest("strict decoding error: " + strings.Join(warnings, ", "))
		}
		if validation == fieldValidationIgnore {
			warnings = nil
		}
	}
	if got != nil && (got.Kind != gvk.Kind || got.GroupVersion() != gvk.GroupVersion()) {
		if got.GroupVersion() != gvk.GroupVersion() {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", got.GroupVersion(), gvk.GroupVersion()))
		}
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", got.Kind, gvk.Kind))
	}
	if obj != into {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("decoded %T, expected %T", obj, into))
	}
	return warnings, nil
}

// hugeExponent matches a whole JSON or YAML scalar (a quoted string, or a
// value after a colon) that is a number whose exponent has four digits or
// more. It is anchored to whole values so that hex in UIDs and image
// digests never matches. Protobuf bodies are not checked.
var hugeExponent = regexp.MustCompile(`(?:["']|":[ \t]*|:[ \t]+)[+-]?[0-9]*\.?[0-9]+[eE][+-]?0*[1-9][0-9]{3,}(?:["'\s,}\]]|$)`)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func looksLikeJSON(data []byte) bool {
	for _, b := range data {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// decodeDeleteOptions reads DeleteOptions from the body (if any) and from
// query parameters, as kubectl sends them either way.
func decodeDeleteOptions(r *http.Request, data []byte) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	if len(strings.TrimSpace(string(data))) > 0 {
		var dec runtime.Decoder = strictJSON
		if strings.HasPrefix(r.Header.Get("Content-Type"), contentTypeProtobuf) {
			dec = protoSer
		}
		gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		_, _, err := dec.Decode(data, &gvk, opts)
		if err != nil && !runtime.IsStrictDecodingError(err) {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decode DeleteOptions: %v", err))
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		var g int64
		if _, err := fmt.Sscan(v, &g); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds %q is not a number", v))
		}
		opts.GracePeriodSeconds = &g
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b := v == "true"
		opts.OrphanDependents = &b
	}
	if q.Get("dryRun") == "All" {
		opts.DryRun = []string{"All"}
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy %q is not one of Orphan, Background, Foreground", *p))
		}
	}
	if g := opts.GracePeriodSeconds; g != nil && *g < 0 {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	return opts, nil
}

func isDryRun(r *http.Request) (bool, error) {
	switch v := r.URL.Query()["dryRun"]; {
	case len(v) == 0:
		return false, nil
	case len(v) == 1 && v[0] == "All":
		return true, nil
	default:
		return false, apierrors.NewBadRequest(fmt.Sprintf("dryRun %v is not supported; the only valid value is All", v))
	}
}
