package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berth-project/berth/internal/storage"
)

// ListOptions select and page a list or a watch.
type ListOptions struct {
	Labels          labels.Selector
	Fields          fields.Selector
	Limit           int64
	Continue        string
	ResourceVersion string
	// ResourceVersionMatch is "", "Exact" or "NotOlderThan".
	ResourceVersionMatch metav1.ResourceVersionMatch
	// Watch-only options.
	AllowBookmarks    bool
	SendInitialEvents *bool
}

func (o *ListOptions) matcher(k *Kind) func(runtime.Object) bool {
	ls, fs := o.Labels, o.Fields
	if (ls == nil || ls.Empty()) && (fs == nil || fs.Empty()) {
		return func(runtime.Object) bool { return true }
	}
	return func(obj runtime.Object) bool {
		l, f, err := k.Attrs(obj)
		if err != nil {
			return false
		}
		if ls != nil && !ls.Matches(l) {
			return false
		}
		if fs != nil && !fs.Matches(f) {
			return false
		}
		return true
	}
}

// continueToken is the shape Kubernetes uses, so tokens look familiar.
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

func encodeContinue(rev int64, startKey string) string {
	data, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rev, StartKey: startKey})
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeContinue(token string) (int64, string, error) {
	data, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", fmt.Errorf("continue key is not valid: %w", err)
	}
	var t continueToken
	if err := json.Unmarshal(data, &t); err != nil || t.APIVersion != "meta.k8s.io/v1" || t.ResourceVersion <= 0 {
		return 0, "", errors.New("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
	}
	if strings.Contains(t.StartKey, "..") || strings.HasPrefix(t.StartKey, "/") {
		return 0, "", errors.New("continue key is not valid: start key is not a relative key")
	}
	return t.ResourceVersion, t.StartKey, nil
}

// ValidateFieldSelector rejects selectors on fields the kind cannot be
// selected by, with Kubernetes' message.
func (k *Kind) ValidateFieldSelector(fs fields.Selector) error {
	if fs == nil || fs.Empty() {
		return nil
	}
	allowed := map[string]bool{"metadata.name": true}
	if k.Namespaced {
		allowed["metadata.namespace"] = true
	}
	if a, ok := k.Strategy.(AttrsStrategy); ok {
		for f := range a.SelectableFields(k.New()) {
			allowed[f] = true
		}
	}
	for _, r := range fs.Requirements() {
		if !allowed[r.Field] {
			return apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", r.Field))
		}
	}
	return nil
}

// List returns the objects in ns (all namespaces when ns is "") that match
// opts, as the kind's list type.
func (s *Store) List(ctx context.Context, ns string, opts ListOptions) (runtime.Object, error) {
	if err := s.Kind.ValidateFieldSelector(opts.Fields); err != nil {
		return nil, err
	}
	prefix := s.listPrefix(ns)
	var rev int64
	startKey := ""
	switch {
	case opts.Continue != "":
		r, start, err := decodeContinue(opts.Continue)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		rev, startKey = r, prefix+start
	case opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact:
		r, err := ParseResourceVersion(opts.ResourceVersion, s.Kind.GroupResource())
		if err != nil {
			return nil, err
		}
		if r == 0 {
			return nil, apierrors.NewBadRequest("resourceVersionMatch=Exact requires a resourceVersion other than 0")
		}
		rev = r
	case opts.ResourceVersionMatch != "" && opts.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unsupported resourceVersionMatch %q", opts.ResourceVersionMatch))
	}
	match := opts.matcher(s.Kind)
	var items []runtime.Object
	var lastKey string
	more := false
	var remaining int64 = -1
	pageSize := opts.Limit
	if pageSize <= 0 || pageSize > 1000 {
		pageSize = 1000
	}
	if opts.Limit <= 0 {
		pageSize = 0 // one read of everything
	}
	for {
		res, err := s.storage.List(ctx, prefix, storage.ListOptions{StartKey: startKey, Limit: pageSize, Revision: rev})
		if errors.Is(err, storage.ErrCompacted) {
			if opts.Continue != "" {
				return nil, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
			}
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d", rev))
		}
		if err != nil {
			return nil, s.internal(err)
		}
		rev = res.Revision
		for i, kv := range res.Items {
			obj, err := s.Kind.decode(kv.Value, kv.Revision)
			if err != nil {
				s.log.Error("skipping undecodable object", "key", kv.Key, "err", err)
				continue
			}
			if !match(obj) {
				continue
			}
			items = append(items, obj)
			lastKey = kv.Key
			if opts.Limit > 0 && int64(len(items)) == opts.Limit {
				if i < len(res.Items)-1 || res.More {
					more = true
					if (opts.Labels == nil || opts.Labels.Empty()) && (opts.Fields == nil || opts.Fields.Empty()) && pageSize == opts.Limit {
						remaining = res.Remaining + int64(len(res.Items)-1-i)
					}
				}
				break
			}
		}
		if more || !res.More || len(res.Items) == 0 {
			break
		}
		startKey = res.Items[len(res.Items)-1].Key + "\x00"
	}
	list := s.Kind.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, s.internal(err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, s.internal(err)
	}
	lm.SetResourceVersion(formatRV(rev))
	if more {
		lm.SetContinue(encodeContinue(rev, strings.TrimPrefix(lastKey, prefix)+"\x00"))
		if remaining >= 0 {
			lm.SetRemainingItemCount(&remaining)
		}
	}
	list.GetObjectKind().SetGroupVersionKind(s.Kind.GroupVersionKind.GroupVersion().WithKind(s.Kind.GroupVersionKind.Kind + "List"))
	return list, nil
}
