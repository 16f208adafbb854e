package podspec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Resolver fetches the ConfigMaps and Secrets that env and envFrom refer
// to. A missing object is reported with an error for which
// apierrors.IsNotFound is true.
type Resolver interface {
	ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error)
	Secret(ctx context.Context, namespace, name string) (map[string][]byte, error)
}

// PodAddresses are the addresses the downward API reports; the kubelet takes
// them from the pod sandbox, before they are in the Pod's status.
type PodAddresses struct {
	PodIPs  []string
	HostIPs []string
}

// EnvVar is one resolved environment variable.
type EnvVar struct {
	Name, Value string
}

// ResolveEnv computes a container's environment from envFrom and env as the
// kubelet does: envFrom sources first (keys that are not valid variable
// names are skipped), then env in order, each value's $(VAR) references
// expanded against the variables defined before it, and valueFrom resolved
// through the downward API, resources or res. References may also name the
// service links (services), which the container's own variables shadow. A
// later definition replaces an earlier one in place. The error is an *Error
// with reason CreateContainerConfigError.
func ResolveEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, addrs PodAddresses, allocatable corev1.ResourceList, res Resolver, services map[string]string) ([]EnvVar, error) {
	var out []EnvVar
	index := map[string]int{}
	values := map[string]string{}
	set := func(name, value string) {
		if i, ok := index[name]; ok {
			out[i].Value = value
		} else {
			index[name] = len(out)
			out = append(out, EnvVar{Name: name, Value: value})
		}
		values[name] = value
	}
	fail := func(format string, args ...any) ([]EnvVar, error) {
		return nil, &Error{Reason: ReasonCreateContainerConfigError, Message: fmt.Sprintf(format, args...)}
	}

	for _, src := range c.EnvFrom {
		var data map[string]string
		switch {
		case src.ConfigMapRef != nil:
			name := src.ConfigMapRef.Name
			m, err := lookupConfigMap(ctx, res, pod.Namespace, name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(src.ConfigMapRef.Optional) {
					continue
				}
				return fail("%s", refError("configmap", name, err))
			}
			data = m
		case src.SecretRef != nil:
			name := src.SecretRef.Name
			m, err := lookupSecret(ctx, res, pod.Namespace, name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(src.SecretRef.Optional) {
					continue
				}
				return fail("%s", refError("secret", name, err))
			}
			data = make(map[string]string, len(m))
			for k, v := range m {
				data[k] = string(v)
			}
		default:
			continue
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			name := src.Prefix + k
			if len(validation.IsEnvVarName(name)) > 0 {
				continue // the kubelet skips these (and reports them in an event)
			}
			set(name, data[k])
		}
	}

	for _, e := range c.Env {
		v := e.Value
		switch {
		case v != "":
			v = Expand(v, mapLookup(values, services))
		case e.ValueFrom != nil:
			vf := e.ValueFrom
			var err error
			switch {
			case vf.FieldRef != nil:
				v, err = FieldRefValue(pod, vf.FieldRef.FieldPath, addrs)
				if err != nil {
					return fail("env %s: %v", e.Name, err)
				}
			case vf.ResourceFieldRef != nil:
				v, err = resourceFieldValue(vf.ResourceFieldRef, pod, c, allocatable)
				if err != nil {
					return fail("env %s: %v", e.Name, err)
				}
			case vf.ConfigMapKeyRef != nil:
				ref := vf.ConfigMapKeyRef
				m, err := lookupConfigMap(ctx, res, pod.Namespace, ref.Name)
				if err != nil {
					if apierrors.IsNotFound(err) && optional(ref.Optional) {
						continue
					}
					return fail("%s", refError("configmap", ref.Name, err))
				}
				val, ok := m[ref.Key]
				if !ok {
					if optional(ref.Optional) {
						continue
					}
					return fail("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
				}
				v = val
			case vf.SecretKeyRef != nil:
				ref := vf.SecretKeyRef
				m, err := lookupSecret(ctx, res, pod.Namespace, ref.Name)
				if err != nil {
					if apierrors.IsNotFound(err) && optional(ref.Optional) {
						continue
					}
					return fail("%s", refError("secret", ref.Name, err))
				}
				val, ok := m[ref.Key]
				if !ok {
					if optional(ref.Optional) {
						continue
					}
					return fail("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
				}
				v = string(val)
			}
		}
		set(e.Name, v)
	}
	return out, nil
}

func optional(p *bool) bool { return p != nil && *p }

var errNoResolver = errors.New("no API client to read it from")

func lookupConfigMap(ctx context.Context, res Resolver, ns, name string) (map[string]string, error) {
	if res == nil {
		return nil, errNoResolver
	}
	return res.ConfigMap(ctx, ns, name)
}

func lookupSecret(ctx context.Context, res Resolver, ns, name string) (map[string][]byte, error) {
	if res == nil {
		return nil, errNoResolver
	}
	return res.Secret(ctx, ns, name)
}

// refError words a failed lookup as the kubelet does: `configmap "x" not found`.
func refError(kind, name string, err error) string {
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("%s %q not found", kind, name)
	}
	return fmt.Sprintf("get %s %q: %v", kind, name, err)
}

// FieldRefValue resolves a downward API field path for an environment
// variable: the fields Kubernetes allows there, with the addresses taken
// from addrs rather than from the Pod's status.
func FieldRefValue(pod *corev1.Pod, path string, addrs PodAddresses) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return first(addrs.PodIPs), nil
	case "status.podIPs":
		return strings.Join(addrs.PodIPs, ","), nil
	case "status.hostIP":
		return first(addrs.HostIPs), nil
	case "status.hostIPs":
		return strings.Join(addrs.HostIPs, ","), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"["); ok {
			key, ok := subscript(rest)
			if !ok {
				return "", fmt.Errorf("invalid field path %q: want %s['key']", path, prefix)
			}
			return m[key], nil
		}
	}
	return "", fmt.Errorf("unsupported field path %q", path)
}

// subscript parses "'key']" (the rest of labels['key']).
func subscript(s string) (string, bool) {
	if !strings.HasSuffix(s, "]") {
		return "", false
	}
	s = strings.TrimSuffix(s, "]")
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1], true
	}
	return "", false
}

// formatMap renders labels or annotations as the downward API does: one
// key="value" per line, sorted by key.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + "=" + strconv.Quote(m[k])
	}
	return strings.Join(lines, "\n")
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// resourceFieldValue resolves resourceFieldRef as the kubelet does: a limit
// that is not set is the node's allocatable amount, and the value is rounded
// up to a whole number of divisors.
func resourceFieldValue(ref *corev1.ResourceFieldSelector, pod *corev1.Pod, c *corev1.Container, allocatable corev1.ResourceList) (string, error) {
	target := c
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		target = nil
		for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for i := range list {
				if list[i].Name == ref.ContainerName {
					target = &list[i]
				}
			}
		}
		if target == nil {
			return "", fmt.Errorf("resourceFieldRef: no container named %q", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	switch rn {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
	default:
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	var q resource.Quantity
	if kind == "limits" {
		if v, ok := target.Resources.Limits[rn]; ok {
			q = v
		} else if v, ok := allocatable[rn]; ok {
			q = v
		}
	} else if v, ok := target.Resources.Requests[rn]; ok {
		q = v
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	var n float64
	if rn == corev1.ResourceCPU {
		n = math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
	} else {
		n = math.Ceil(float64(q.Value()) / float64(divisor.Value()))
	}
	return strconv.FormatInt(int64(n), 10), nil
}
