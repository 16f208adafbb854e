package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berth-project/berth/internal/registry"
)

// serveResource handles every verb on a resource path.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, info requestInfo) {
	gvr := schema.GroupVersionResource{Group: info.Group, Version: info.Version, Resource: info.Resource}
	store := s.registry.Store(gvr.GroupResource())
	if store == nil || store.Kind.GroupVersionKind.Version != info.Version {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	kind := store.Kind
	if info.Namespace != "" && !kind.Namespaced {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	if kind.Namespaced && info.Namespace == "" && info.Verb != "list" && info.Verb != "watch" {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	if info.Subresource != "" {
		s.serveSubresource(w, r, info, store)
		return
	}
	switch info.Verb {
	case "get":
		s.get(w, r, info, store)
	case "list":
		s.list(w, r, info, store)
	case "watch":
		s.watch(w, r, info, store)
	case "create":
		if info.Name != "" {
			writeStatus(w, statusFor(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, fmt.Sprintf("POST is not allowed on a named %s; POST to the collection", kind.Resource)))
			return
		}
		s.create(w, r, info, store)
	case "update":
		s.update(w, r, info, store, "")
	case "patch":
		s.patch(w, r, info, store, "")
	case "delete":
		s.delete(w, r, info, store)
	case "deletecollection":
		s.deleteCollection(w, r, info, store)
	default:
		writeStatus(w, statusFor(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, fmt.Sprintf("method %s is not allowed", r.Method)))
	}
}

func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	kind := store.Kind
	sub := info.Subresource
	supported := sub == "status" && kind.HasStatus()
	for _, x := range kind.Subresources {
		if x == sub {
			supported = true
		}
	}
	if !supported || info.Name == "" {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	switch {
	case sub == "status" || sub == "finalize":
		switch info.Verb {
		case "get":
			if sub == "finalize" {
				break
			}
			s.get(w, r, info, store)
			return
		case "update":
			s.update(w, r, info, store, sub)
			return
		case "patch":
			s.patch(w, r, info, store, sub)
			return
		}
	case sub == "binding" && info.Verb == "create":
		s.bind(w, r, info, store)
		return
	case sub == "scale":
		s.serveScale(w, r, info, store)
		return
	case sub == "log" || sub == "exec" || sub == "portforward" || sub == "attach" || sub == "proxy":
		s.servePodConnect(w, r, info, store)
		return
	}
	writeStatus(w, statusFor(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
		fmt.Sprintf("%s is not allowed on %s/%s", r.Method, kind.Resource, sub)))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, err := store.Get(r.Context(), info.Namespace, info.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeResult(w, r, n, http.StatusOK, store.Kind, obj)
}

// writeResult writes obj (or list) as the negotiated representation.
func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, n negotiated, code int, kind *registry.Kind, obj runtime.Object) {
	switch n.kind {
	case outputTable:
		table, err := kind.Table(obj, includeObject(r), false, s.now())
		if err != nil {
			writeError(w, apierrors.NewInternalError(err))
			return
		}
		writeObject(w, r, n, code, table)
	case outputPartialMetadata:
		writeObject(w, r, n, code, partialMetadata(obj))
	default:
		writeObject(w, r, n, code, obj)
	}
}

func includeObject(r *http.Request) registry.IncludeObject {
	switch v := registry.IncludeObject(r.URL.Query().Get("includeObject")); v {
	case registry.IncludeNone, registry.IncludeObjectV:
		return v
	}
	return registry.IncludeMetadata
}

func partialMetadata(obj runtime.Object) runtime.Object {
	if meta.IsListType(obj) {
		items, _ := meta.ExtractList(obj)
		out := &metav1.PartialObjectMetadataList{}
		if lm, err := meta.ListAccessor(obj); err == nil {
			out.ResourceVersion, out.Continue = lm.GetResourceVersion(), lm.GetContinue()
		}
		for _, it := range items {
			out.Items = append(out.Items, *partialMetadata(it).(*metav1.PartialObjectMetadata))
		}
		out.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadataList"))
		return out
	}
	p := &metav1.PartialObjectMetadata{}
	if om := registry.ObjectMetaCopy(obj); om != nil {
		p.ObjectMeta = *om
	}
	p.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
	return p
}

func listOptions(r *http.Request, info requestInfo) (registry.ListOptions, error) {
	q := r.URL.Query()
	var opts registry.ListOptions
	var err error
	if opts.Labels, err = labels.Parse(q.Get("labelSelector")); err != nil {
		return opts, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
	}
	if opts.Fields, err = fields.ParseSelector(q.Get("fieldSelector")); err != nil {
		return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
	}
	if info.Name != "" {
		// GET .../watch/.../NAME and ?watch on a named object.
		opts.Fields = fields.AndSelectors(opts.Fields, fields.OneTermEqualSelector("metadata.name", info.Name))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("limit %q is not a non-negative number", v))
		}
		opts.Limit = n
	}
	opts.Continue = q.Get("continue")
	opts.ResourceVersion = q.Get("resourceVersion")
	opts.ResourceVersionMatch = metav1.ResourceVersionMatch(q.Get("resourceVersionMatch"))
	if opts.Continue != "" && opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
		return opts, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
	}
	opts.AllowBookmarks = q.Get("allowWatchBookmarks") == "true"
	if v := q.Get("sendInitialEvents"); v != "" {
		b := v == "true"
		opts.SendInitialEvents = &b
	}
	return opts, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := listOptions(r, info)
	if err != nil {
		writeError(w, err)
		return
	}
	list, err := store.List(r.Context(), info.Namespace, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeResult(w, r, n, http.StatusOK, store.Kind, list)
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := listOptions(r, info)
	if err != nil {
		writeError(w, err)
		return
	}
	release, err := s.watches.acquire(r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	timeout := time.Duration(float64(s.cfg.MinWatchTimeout) * (1 + rand.Float64()))
	if v := r.URL.Query().Get("timeoutSeconds"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("timeoutSeconds %q is not a non-negative number", v)))
			return
		}
		if secs > 0 {
			timeout = time.Duration(secs) * time.Second
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	events, err := store.Watch(ctx, info.Namespace, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	flusher, _ := w.(http.Flusher)
	ct := "application/json"
	if n.yaml {
		ct = "application/yaml"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	first := true
	for ev := range events {
		raw, err := s.encodeWatchObject(r, n, store.Kind, ev, first)
		if err != nil {
			s.log.Error("encode watch event", "resource", store.Kind.Resource, "err", err)
			return
		}
		if ev.Type != watch.Bookmark && ev.Type != watch.Error {
			first = false
		}
		line, err := json.Marshal(metav1.WatchEvent{Type: string(ev.Type), Object: runtime.RawExtension{Raw: raw}})
		if err != nil {
			return
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func (s *Server) encodeWatchObject(r *http.Request, n negotiated, kind *registry.Kind, ev watch.Event, first bool) ([]byte, error) {
	if ev.Type == watch.Error {
		if st, ok := ev.Object.(*metav1.Status); ok {
			st.Kind, st.APIVersion = "Status", "v1"
		}
		return json.Marshal(ev.Object)
	}
	if ev.Type == watch.Bookmark {
		// A bookmark carries only a resourceVersion (and annotations), in
		// the form the client asked for, so its decoder accepts it.
		if n.kind == outputPartialMetadata {
			return json.Marshal(partialMetadata(ev.Object))
		}
		return json.Marshal(ev.Object)
	}
	switch n.kind {
	case outputTable:
		table, err := kind.Table(ev.Object, includeObject(r), !first, s.now())
		if err != nil {
			return nil, err
		}
		return json.Marshal(table)
	case outputPartialMetadata:
		return json.Marshal(partialMetadata(ev.Object))
	}
	return json.Marshal(ev.Object)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dryRun, err := isDryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	validation, err := fieldValidation(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	obj := store.Kind.New()
	warnings, err := decodeInto(r, data, store.Kind.GroupVersionKind, obj, validation)
	if err != nil {
		writeError(w, err)
		return
	}
	addWarnings(w, warnings)
	out, err := store.Create(r.Context(), info.Namespace, obj, registry.CreateOptions{DryRun: dryRun})
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeResult(w, r, n, http.StatusCreated, store.Kind, out)
}

func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", `299 - `+strconv.Quote(msg))
	}
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store, sub string) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dryRun, err := isDryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	validation, err := fieldValidation(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	obj := store.Kind.New()
	warnings, err := decodeInto(r, data, store.Kind.GroupVersionKind, obj, validation)
	if err != nil {
		writeError(w, err)
		return
	}
	addWarnings(w, warnings)
	out, created, err := store.Update(r.Context(), info.Namespace, info.Name, obj, registry.UpdateOptions{Subresource: sub, DryRun: dryRun})
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	s.writeResult(w, r, n, code, store.Kind, out)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store, sub string) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dryRun, err := isDryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	validation, err := fieldValidation(r)
	if err != nil {
		writeError(w, err)
		return
	}
	patchType := types.PatchType(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	patch, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	kind := store.Kind
	var warnings []string
	out, err := store.GuaranteedUpdate(r.Context(), info.Namespace, info.Name, registry.UpdateOptions{Subresource: sub, DryRun: dryRun},
		func(cur runtime.Object) (runtime.Object, error) {
			cur.GetObjectKind().SetGroupVersionKind(kind.GroupVersionKind)
			curJSON, err := json.Marshal(cur)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			patched, err := applyPatch(kind, patchType, curJSON, patch)
			if err != nil {
				return nil, err
			}
			obj := kind.New()
			r2 := r.Clone(r.Context())
			r2.Header.Set("Content-Type", "application/json")
			if warnings, err = decodeInto(r2, patched, kind.GroupVersionKind, obj, validation); err != nil {
				return nil, err
			}
			curMeta, _ := meta.Accessor(cur)
			m, err := meta.Accessor(obj)
			if err != nil {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			if m.GetResourceVersion() == curMeta.GetResourceVersion() {
				// The patch did not ask for a precondition: retry on conflict.
				m.SetResourceVersion("")
			}
			return obj, nil
		})
	if err != nil {
		writeError(w, err)
		return
	}
	addWarnings(w, warnings)
	s.writeResult(w, r, n, http.StatusOK, kind, out)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := decodeDeleteOptions(r, data)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, deleted, err := store.Delete(r.Context(), info.Namespace, info.Name, opts, len(opts.DryRun) > 0)
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if !deleted && opts.OrphanDependents != nil && !*opts.OrphanDependents {
		code = http.StatusAccepted
	}
	if deleted && !store.Kind.ReturnDeletedObject {
		writeObject(w, r, n, code, &metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusSuccess,
			Details:  &metav1.StatusDetails{Name: info.Name, Group: info.Group, Kind: store.Kind.Resource, UID: registry.ObjectUID(obj)},
		})
		return
	}
	s.writeResult(w, r, n, code, store.Kind, obj)
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	lopts, err := listOptions(r, info)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := decodeDeleteOptions(r, data)
	if err != nil {
		writeError(w, err)
		return
	}
	list, err := store.DeleteCollection(r.Context(), info.Namespace, lopts, opts, len(opts.DryRun) > 0)
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeResult(w, r, n, http.StatusOK, store.Kind, list)
}

// bind serves POST pods/NAME/binding, the scheduler's way to set a node.
func (s *Server) bind(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	b := &corev1.Binding{}
	if _, err := decodeInto(r, data, corev1.SchemeGroupVersion.WithKind("Binding"), b, fieldValidationIgnore); err != nil {
		writeError(w, err)
		return
	}
	if b.Target.Name == "" {
		writeError(w, apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, b.Name, nil))
		return
	}
	if b.Name != "" && b.Name != info.Name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("the name of the binding (%s) does not match the pod (%s)", b.Name, info.Name)))
		return
	}
	_, err = store.GuaranteedUpdate(r.Context(), info.Namespace, info.Name, registry.UpdateOptions{Subresource: "binding"},
		func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod)
			if b.UID != "" && b.UID != p.UID {
				return nil, apierrors.NewConflict(store.Kind.GroupResource(), info.Name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", b.UID, p.UID))
			}
			if p.Spec.NodeName != "" {
				return nil, apierrors.NewConflict(store.Kind.GroupResource(), info.Name, fmt.Errorf("pod %s is already assigned to node %q", p.Name, p.Spec.NodeName))
			}
			p.Spec.NodeName = b.Target.Name
			p.ResourceVersion = ""
			return p, nil
		})
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, n, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}
