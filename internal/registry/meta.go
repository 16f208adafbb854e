package registry

import (
	"crypto/rand"
	"math/big"
	"strconv"

	"k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func formatRV(rev int64) string { return strconv.FormatInt(rev, 10) }

// ParseResourceVersion turns a resourceVersion into a store revision; "" is 0.
func ParseResourceVersion(rv string, gr schema.GroupResource) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.NewBadRequest("invalid resource version " + strconv.Quote(rv) + " for " + gr.String())
	}
	return n, nil
}

// The alphabet and length Kubernetes uses for generateName suffixes: no vowels
// and no look-alike characters, so that generated names never spell words.
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"
const nameSuffixLen = 5
const maxGeneratedNameLength = 63 - nameSuffixLen

func generateName(base string) string {
	if len(base) > maxGeneratedNameLength {
		base = base[:maxGeneratedNameLength]
	}
	b := make([]byte, nameSuffixLen)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(nameAlphabet))))
		if err != nil {
			n = big.NewInt(int64(i))
		}
		b[i] = nameAlphabet[n.Int64()]
	}
	return base + string(b)
}
