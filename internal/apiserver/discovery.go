package apiserver

import (
	"net/http"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/berth-project/berth/internal/registry"
)

var allVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// subresourceInfo is how discovery describes each subresource berth serves.
var subresourceInfo = map[string]struct {
	kind    string
	group   string
	version string
	verbs   metav1.Verbs
}{
	"status":      {verbs: metav1.Verbs{"get", "patch", "update"}},
	"binding":     {kind: "Binding", verbs: metav1.Verbs{"create"}},
	"log":         {kind: "Pod", verbs: metav1.Verbs{"get"}},
	"exec":        {kind: "PodExecOptions", verbs: metav1.Verbs{"create", "get"}},
	"attach":      {kind: "PodAttachOptions", verbs: metav1.Verbs{"create", "get"}},
	"portforward": {kind: "PodPortForwardOptions", verbs: metav1.Verbs{"create", "get"}},
	"proxy":       {kind: "", verbs: metav1.Verbs{"create", "delete", "get", "patch", "update"}},
	"finalize":    {verbs: metav1.Verbs{"update"}},
	"scale":       {kind: "Scale", group: "autoscaling", version: "v1", verbs: metav1.Verbs{"get", "patch", "update"}},
}

func (s *Server) groupVersions() map[schema.GroupVersion][]*registry.Kind {
	out := map[schema.GroupVersion][]*registry.Kind{}
	for _, st := range s.registry.Stores() {
		gv := st.Kind.GroupVersionKind.GroupVersion()
		out[gv] = append(out[gv], st.Kind)
	}
	return out
}

func (s *Server) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	kinds := s.groupVersions()[gv]
	if kinds == nil {
		return nil
	}
	list := &metav1.APIResourceList{GroupVersion: gv.String()}
	list.Kind, list.APIVersion = "APIResourceList", "v1"
	for _, k := range kinds {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: k.Resource, SingularName: k.Singular, Namespaced: k.Namespaced, Kind: k.GroupVersionKind.Kind,
			Verbs: allVerbs, ShortNames: k.ShortNames, Categories: k.Categories,
		})
		subs := append([]string(nil), k.Subresources...)
		if k.HasStatus() {
			subs = append(subs, "status")
		}
		sort.Strings(subs)
		for _, sub := range subs {
			si := subresourceInfo[sub]
			kind := si.kind
			if kind == "" && sub != "proxy" {
				kind = k.GroupVersionKind.Kind
			}
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: k.Resource + "/" + sub, Namespaced: k.Namespaced, Kind: kind, Group: si.group, Version: si.version, Verbs: si.verbs,
			})
		}
	}
	sort.Slice(list.APIResources, func(i, j int) bool { return list.APIResources[i].Name < list.APIResources[j].Name })
	return list
}

func (s *Server) groups() []metav1.APIGroup {
	var out []metav1.APIGroup
	for gv := range s.groupVersions() {
		if gv.Group == "" {
			continue
		}
		v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		out = append(out, metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Server) rootPaths() []string {
	paths := []string{"/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"}
	for _, g := range s.groups() {
		paths = append(paths, "/apis/"+g.Name, "/apis/"+g.PreferredVersion.GroupVersion)
	}
	sort.Strings(paths)
	return paths
}

// serveDiscovery answers the legacy discovery documents. kubectl asks for the
// aggregated form first and falls back to these when the answer is plain JSON.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, p string) {
	parts := splitPath(p)
	notFound := func() {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
	}
	switch {
	case p == "/api":
		writeObject(w, r, negotiated{}, http.StatusOK, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}},
		})
	case p == "/apis":
		writeObject(w, r, negotiated{}, http.StatusOK, &metav1.APIGroupList{
			TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: s.groups(),
		})
	case p == "/api/v1":
		writeObject(w, r, negotiated{}, http.StatusOK, s.resourceList(schema.GroupVersion{Version: "v1"}))
	case len(parts) == 2: // /apis/GROUP
		for _, g := range s.groups() {
			if g.Name == parts[1] {
				g.Kind, g.APIVersion = "APIGroup", "v1"
				writeObject(w, r, negotiated{}, http.StatusOK, &g)
				return
			}
		}
		notFound()
	case len(parts) == 3: // /apis/GROUP/VERSION
		list := s.resourceList(schema.GroupVersion{Group: parts[1], Version: parts[2]})
		if list == nil {
			notFound()
			return
		}
		writeObject(w, r, negotiated{}, http.StatusOK, list)
	default:
		notFound()
	}
}
