package deployment

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/davecgh/go-spew/spew"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// ComputeHash is the pod-template-hash of template: upstream's FNV-32a of a
// deterministic dump of the template, with collisionCount (when set) mixed in
// so that a collision with an unrelated ReplicaSet of the same name can be
// resolved by bumping status.collisionCount, encoded with SafeEncodeString
// (no vowels, so it never spells a word).
//
// The dump is go-spew's, configured as upstream's DeepHashObject, so berth
// names ReplicaSets as kube-controller-manager built against the same
// k8s.io/api does.
func ComputeHash(template *v1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	printer := spew.ConfigState{Indent: " ", SortKeys: true, DisableMethods: true, SpewKeys: true}
	printer.Fprintf(h, "%#v", *template)
	if collisionCount != nil {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(*collisionCount))
		h.Write(b)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}
