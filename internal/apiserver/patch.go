package apiserver

import (
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/berth-project/berth/internal/registry"
)

// maxJSONPatchOperations bounds JSON patches as Kubernetes does.
const maxJSONPatchOperations = 10000

// applyPatch applies a patch of patchType to the JSON of the current object.
func applyPatch(kind *registry.Kind, patchType types.PatchType, current, patch []byte) ([]byte, error) {
	switch patchType {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the JSON patch is invalid: %v", err))
		}
		if len(p) > maxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(p)))
		}
		out, err := p.Apply(current)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(422, "patch", kind.GroupResource(), "", err.Error(), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("the merge patch is not valid JSON")
		}
		out, err := jsonpatch.MergePatch(current, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("apply merge patch: %v", err))
		}
		return out, nil
	case types.StrategicMergePatchType:
		var probe map[string]interface{}
		if err := json.Unmarshal(patch, &probe); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the strategic merge patch is not a JSON object: %v", err))
		}
		out, err := strategicpatch.StrategicMergePatch(current, patch, kind.New())
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("apply strategic merge patch: %v", err))
		}
		return out, nil
	case types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
		return nil, apierrors.NewGenericServerResponse(415, "patch", kind.GroupResource(), "",
			"server-side apply is not supported by berth; use client-side apply (kubectl apply without --server-side)", 0, false)
	}
	return nil, apierrors.NewGenericServerResponse(415, "patch", kind.GroupResource(), "",
		fmt.Sprintf("the patch content type %q is not supported; use application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json", patchType), 0, false)
}
