package apiserver

import (
	"net/http"
	"strings"
)

// requestInfo is what a resource URL says, in Kubernetes' terms.
type requestInfo struct {
	Verb        string // get list watch create update patch delete deletecollection
	Group       string
	Version     string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	// Parts is the path after the group version, for errors.
	Parts []string
}

// parseResourcePath understands /api/v1/... and /apis/GROUP/VERSION/...,
// including the deprecated /watch/ prefix. ok is false for anything that is
// not a resource path (discovery, health).
func parseResourcePath(r *http.Request) (requestInfo, bool) {
	parts := splitPath(r.URL.Path)
	var info requestInfo
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		info.Version = parts[1]
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		info.Group, info.Version = parts[1], parts[2]
		parts = parts[3:]
	default:
		return info, false
	}
	info.Parts = parts
	watchPrefix := false
	if parts[0] == "watch" {
		watchPrefix = true
		parts = parts[1:]
		if len(parts) == 0 {
			return info, false
		}
	}
	switch {
	case parts[0] == "namespaces" && len(parts) == 3 && (parts[2] == "status" || parts[2] == "finalize"):
		// /namespaces/NAME/status and /namespaces/NAME/finalize are
		// subresources of the namespace itself, as in Kubernetes.
		info.Resource, info.Name, info.Subresource = "namespaces", parts[1], parts[2]
		parts = nil
	case parts[0] == "namespaces" && len(parts) >= 3:
		info.Namespace = parts[1]
		parts = parts[2:]
	case parts[0] == "namespaces" && len(parts) == 2:
		// /namespaces/NAME is the namespace itself.
		info.Resource, info.Name = "namespaces", parts[1]
		parts = nil
	}
	if parts != nil {
		info.Resource = parts[0]
		if len(parts) > 1 {
			info.Name = parts[1]
		}
		if len(parts) > 2 {
			info.Subresource = strings.Join(parts[2:], "/")
		}
	}
	q := r.URL.Query()
	isWatch := watchPrefix || q.Get("watch") == "true" || q.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case info.Name == "" && isWatch:
			info.Verb = "watch"
		case info.Name == "":
			info.Verb = "list"
		case isWatch:
			info.Verb = "watch" // watch of one object, by name
		default:
			info.Verb = "get"
		}
	case http.MethodPost:
		info.Verb = "create"
	case http.MethodPut:
		info.Verb = "update"
	case http.MethodPatch:
		info.Verb = "patch"
	case http.MethodDelete:
		if info.Name == "" {
			info.Verb = "deletecollection"
		} else {
			info.Verb = "delete"
		}
	default:
		info.Verb = strings.ToLower(r.Method)
	}
	return info, true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
