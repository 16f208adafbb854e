package forward

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Kind is the sort of object a TARGET names.
type Kind string

// The kinds of TARGET berth forward understands.
const (
	KindService    Kind = "svc"
	KindPod        Kind = "pod"
	KindDeployment Kind = "deploy"
)

// kindAliases maps what users type (as kubectl accepts it) to a Kind.
var kindAliases = map[string]Kind{
	"svc": KindService, "service": KindService, "services": KindService,
	"pod": KindPod, "pods": KindPod, "po": KindPod,
	"deploy": KindDeployment, "deployment": KindDeployment, "deployments": KindDeployment,
}

// resource is the API resource name of k, as error messages and RBAC use it.
func (k Kind) resource() string {
	switch k {
	case KindService:
		return "services"
	case KindPod:
		return "pods"
	case KindDeployment:
		return "deployments"
	}
	return string(k)
}

// PortSpec is one [LOCAL:]REMOTE argument.
type PortSpec struct {
	// Local is the local port; 0 means pick a free one (":REMOTE" or "0:REMOTE").
	Local uint16
	// SameLocal is set when the argument had no LOCAL part: the local port is
	// the number of the remote port, known only after a named REMOTE is resolved.
	SameLocal bool
	// Remote is the Service port (svc) or container port (pod, deploy), by
	// number or by name.
	Remote intstr.IntOrString
	// Arg is the argument as typed, for messages.
	Arg string
}

// TargetSpec is one TARGET with the ports that follow it on the command line.
type TargetSpec struct {
	Kind  Kind
	Name  string
	Ports []PortSpec
}

// String returns the target as kind/name.
func (t TargetSpec) String() string { return string(t.Kind) + "/" + t.Name }

// ParseArgs splits `TARGET [LOCAL:]REMOTE... [TARGET [LOCAL:]REMOTE...]...`.
// An argument with a slash starts a new target; the others are its ports.
func ParseArgs(args []string) ([]TargetSpec, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("no TARGET given: usage is berth forward TARGET [LOCAL:]REMOTE..., for example berth forward svc/web 8080:80")
	}
	var targets []TargetSpec
	for _, arg := range args {
		if strings.Contains(arg, "/") {
			kind, name, err := ParseTarget(arg)
			if err != nil {
				return nil, err
			}
			targets = append(targets, TargetSpec{Kind: kind, Name: name})
			continue
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("%q is not a TARGET: the first argument must be svc/NAME, pod/NAME or deploy/NAME, followed by its ports", arg)
		}
		p, err := ParsePort(arg)
		if err != nil {
			return nil, err
		}
		t := &targets[len(targets)-1]
		t.Ports = append(t.Ports, p)
	}
	used := map[uint16]string{}
	for _, t := range targets {
		if len(t.Ports) == 0 {
			return nil, fmt.Errorf("%s has no ports: add [LOCAL:]REMOTE after it, for example %s 8080:80", t, t)
		}
		for _, p := range t.Ports {
			if p.Local == 0 {
				continue
			}
			if prev, ok := used[p.Local]; ok {
				return nil, fmt.Errorf("local port %d is given twice (%s and %s %s): choose another LOCAL, or :REMOTE for a free one", p.Local, prev, t, p.Arg)
			}
			used[p.Local] = t.String() + " " + p.Arg
		}
	}
	return targets, nil
}

// ParseTarget parses svc/NAME, pod/NAME or deploy/NAME (and the kubectl aliases
// service/, services/, pods/, po/, deployment/, deployments/).
func ParseTarget(s string) (Kind, string, error) {
	kindStr, name, ok := strings.Cut(s, "/")
	if !ok {
		return "", "", fmt.Errorf("invalid TARGET %q: use svc/NAME, pod/NAME or deploy/NAME", s)
	}
	kind, known := kindAliases[strings.ToLower(kindStr)]
	if !known {
		return "", "", fmt.Errorf("invalid TARGET %q: unknown kind %q, use svc/NAME, pod/NAME or deploy/NAME", s, kindStr)
	}
	if name == "" {
		return "", "", fmt.Errorf("invalid TARGET %q: the name after %q is missing", s, kindStr+"/")
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("invalid TARGET %q: %q is not a valid object name: %s", s, name, errs[0])
	}
	return kind, name, nil
}

// ParsePort parses LOCAL:REMOTE, REMOTE (same local port) or :REMOTE (a free
// local port), as kubectl port-forward does. REMOTE may be a number or a port name.
func ParsePort(s string) (PortSpec, error) {
	spec := PortSpec{Arg: s}
	parts := strings.Split(s, ":")
	var localStr, remoteStr string
	switch len(parts) {
	case 1:
		remoteStr = parts[0]
		spec.SameLocal = true
	case 2:
		localStr, remoteStr = parts[0], parts[1]
	default:
		return PortSpec{}, fmt.Errorf("invalid port %q: use [LOCAL:]REMOTE, for example 8080:80, 80 or :80", s)
	}
	if remoteStr == "" {
		return PortSpec{}, fmt.Errorf("invalid port %q: REMOTE is missing, use [LOCAL:]REMOTE, for example 8080:80", s)
	}
	if n, err := strconv.ParseUint(remoteStr, 10, 16); err == nil {
		if n == 0 {
			return PortSpec{}, fmt.Errorf("invalid port %q: the remote port must be 1-65535", s)
		}
		spec.Remote = intstr.FromInt32(int32(n))
		if spec.SameLocal {
			spec.Local = uint16(n)
		}
	} else if isDigits(remoteStr) {
		return PortSpec{}, fmt.Errorf("invalid port %q: the remote port must be 1-65535", s)
	} else if errs := validation.IsValidPortName(remoteStr); len(errs) > 0 {
		return PortSpec{}, fmt.Errorf("invalid port %q: %q is neither a port number nor a valid port name (%s)", s, remoteStr, errs[0])
	} else {
		spec.Remote = intstr.FromString(remoteStr)
	}
	if localStr != "" {
		n, err := strconv.ParseUint(localStr, 10, 16)
		if err != nil {
			return PortSpec{}, fmt.Errorf("invalid port %q: the local port %q must be a number 0-65535 (0 or empty picks a free port)", s, localStr)
		}
		spec.Local = uint16(n)
	}
	return spec, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
