package apiserver

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// A quantity with a huge exponent would make apimachinery's parser run for
// minutes or exhaust memory; it is refused before decoding, at once.
func TestDecodeRefusesHugeExponents(t *testing.T) {
	for _, body := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"1e-2000000000"}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[{"name":"c","image":"x","resources":{"limits":{"memory":"5E+1000"}}}]}}`,
	} {
		r := httptest.NewRequest("POST", "/api/v1/namespaces/default/pods", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		start := time.Now()
		_, err := decodeInto(r, []byte(body), corev1.SchemeGroupVersion.WithKind("Pod"), &corev1.Pod{}, fieldValidationStrict)
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "exponent too large") {
			t.Errorf("decode %s: %v, want a 400 about the exponent", body, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refusal took %s", d)
		}
	}
	ok := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"1e3","memory":"128Mi"}}}]}}`
	r := httptest.NewRequest("POST", "/api/v1/namespaces/default/pods", strings.NewReader(ok))
	r.Header.Set("Content-Type", "application/json")
	if _, err := decodeInto(r, []byte(ok), corev1.SchemeGroupVersion.WithKind("Pod"), &corev1.Pod{}, fieldValidationStrict); err != nil {
		t.Errorf("an ordinary quantity: %v", err)
	}
}

func TestHugeExponentMatchesWholeValuesOnly(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"cpu":"1e-2000000000"}`, true},
		{`{"cpu":1e5000}`, true},
		{"cpu: 1e+1000\n", true},
		{"cpu: '2.5E1000'", true},
		{`{"cpu":"1e3"}`, false},
		{`{"uid":"51e23456-8131-4e89-809e-ec4025bf15e8"}`, false},
		{`{"image":"x@sha256:9e12345abcdef"}`, false},
		{`{"image":"x@sha256:0123e45678"}`, false},
		{`{"note":"the value 1e10000 in prose"}`, false},
	} {
		if got := hugeExponent.MatchString(tc.body); got != tc.want {
			t.Errorf("%s: match %v, want %v", tc.body, got, tc.want)
		}
	}
}
