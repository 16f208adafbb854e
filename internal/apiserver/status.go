package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeError writes err as a Kubernetes Status object with its HTTP code.
func writeError(w http.ResponseWriter, err error) {
	st := toStatus(err)
	writeStatus(w, st)
}

func toStatus(err error) *metav1.Status {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		return &st
	}
	if errors.Is(err, context.DeadlineExceeded) {
		st := apierrors.NewTimeoutError("request did not complete within requested timeout - context deadline exceeded", 0).ErrStatus
		st.Code = http.StatusGatewayTimeout
		return &st
	}
	if errors.Is(err, context.Canceled) {
		st := apierrors.NewTimeoutError("request was cancelled", 0).ErrStatus
		return &st
	}
	st := apierrors.NewInternalError(err).ErrStatus
	return &st
}

func writeStatus(w http.ResponseWriter, st *metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
		st.Code = int32(code)
	}
	data, err := json.Marshal(st)
	if err != nil {
		http.Error(w, fmt.Sprintf("encode status: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// As the Kubernetes API server: a Status that says when to retry says it
	// in Retry-After too, which is what client-go waits on (429s, 503s).
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(st.Details.RetryAfterSeconds)))
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// statusFor builds a failure Status with a code, reason and message.
func statusFor(code int, reason metav1.StatusReason, msg string) *metav1.Status {
	return &metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg}
}

// decodeStatus reads a Status error from a JSON body, or returns nil.
func decodeStatus(body []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || st.Code == 0 {
		return nil
	}
	return &apierrors.StatusError{ErrStatus: st}
}
