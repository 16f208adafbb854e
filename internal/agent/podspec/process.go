package podspec

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/agnhost"
)

// Waiting reasons for a container that cannot be started from its spec.
const (
	// ReasonCommandRequired: the image is not one berth has built in and the
	// container has no command, so there is nothing to run.
	ReasonCommandRequired = "CommandRequired"
	// ReasonCreateContainerConfigError is the kubelet's reason for a spec
	// that cannot be turned into a container (a missing ConfigMap, a bad
	// field path, runAsNonRoot with root).
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
)

// Error says why a container cannot be started; Reason is its waiting
// reason and Message tells the user what to change.
type Error struct {
	Reason, Message string
}

func (e *Error) Error() string { return e.Message }

// AgnhostSubcommand is the hidden berth subcommand that runs the built-in
// agnhost image.
const AgnhostSubcommand = "agnhost"

// Environment variables berth sets for every container.
const (
	EnvHostname    = agnhost.EnvHostname
	EnvBindAddress = agnhost.EnvBindAddress
)

// Options is what Build needs from the node.
type Options struct {
	// BerthPath is the absolute path of the berth binary, which runs the
	// built-in images.
	BerthPath string
	// BaseEnv is KEY=VALUE pairs every container starts from (berth passes
	// its own PATH and HOME); the container's env overrides them.
	BaseEnv []string
	// Addresses are the Pod's and the node's addresses.
	Addresses PodAddresses
	// BindAddress, when set, is given to the process as BERTH_BIND_ADDRESS:
	// in loopback network mode processes must bind their Pod's address.
	BindAddress string
	// Root says berth runs as root, so runAsUser and runAsGroup can be
	// applied; otherwise they are ignored and processes run as berth's user.
	Root bool
	// UID is the user berth runs as, for the runAsNonRoot check when
	// runAsUser is not applied.
	UID int64
	// Allocatable is the node's allocatable resources, what
	// resourceFieldRef reports for a limit that is not set.
	Allocatable corev1.ResourceList
	// Resolver reads ConfigMaps and Secrets; nil makes every reference fail.
	Resolver Resolver
	// ServiceEnv is the Pod's service links (see ServiceLinks). The
	// container's own variables override them, and $(VAR) references in its
	// env, command and args can name them.
	ServiceEnv map[string]string
}

// Process is what to run for one container.
type Process struct {
	Argv []string
	Env  []string // KEY=VALUE
	Dir  string
	UID  *int64
	GID  *int64
	// Builtin names the built-in image the process runs ("agnhost"), or is "".
	Builtin string
}

var pauseRepositories = map[string]bool{
	"registry.k8s.io/pause":          true,
	"k8s.gcr.io/pause":               true,
	"gcr.io/google_containers/pause": true,
}

// isPauseImage reports whether image is the Kubernetes pause image, which
// berth runs as agnhost's pause.
func isPauseImage(image string) bool {
	repo := image
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return pauseRepositories[repo]
}

// Build resolves container c of pod into a process. fieldPath names the
// container in messages, e.g. "spec.containers[0]". The error is an *Error
// for every problem with the spec.
func Build(ctx context.Context, pod *corev1.Pod, c *corev1.Container, fieldPath string, opts Options) (Process, error) {
	env, err := ResolveEnv(ctx, pod, c, opts.Addresses, opts.Allocatable, opts.Resolver, opts.ServiceEnv)
	if err != nil {
		return Process{}, err
	}
	values := make(map[string]string, len(env)+len(opts.ServiceEnv))
	maps.Copy(values, opts.ServiceEnv)
	for _, e := range env {
		values[e.Name] = e.Value
	}
	command, args := ExpandCommandAndArgs(c.Command, c.Args, values)

	var p Process
	switch {
	case agnhost.IsImage(c.Image):
		if sub, ok := agnhost.ContainerArgs(command, args); ok {
			p.Argv = append([]string{opts.BerthPath, AgnhostSubcommand}, sub...)
			p.Builtin = AgnhostSubcommand
		}
	case isPauseImage(c.Image) && len(command) == 0 && len(args) == 0:
		p.Argv = []string{opts.BerthPath, AgnhostSubcommand, "pause"}
		p.Builtin = AgnhostSubcommand
	}
	if p.Argv == nil {
		if len(command) == 0 {
			return Process{}, &Error{Reason: ReasonCommandRequired, Message: fmt.Sprintf(
				"berth runs containers as local processes and cannot run image %q without a command; set %s.command, or use %s",
				c.Image, fieldPath, "registry.k8s.io/e2e-test-images/agnhost")}
		}
		p.Argv = append(append([]string{}, command...), args...)
	}
	if p.Builtin != "" && opts.BerthPath == "" {
		return Process{}, &Error{Reason: ReasonCreateContainerConfigError, Message: "berth does not know its own path, so it cannot run built-in images"}
	}

	if c.WorkingDir != "" {
		if !path.IsAbs(c.WorkingDir) {
			return Process{}, &Error{Reason: ReasonCreateContainerConfigError, Message: fmt.Sprintf("%s.workingDir %q is not an absolute path", fieldPath, c.WorkingDir)}
		}
		p.Dir = path.Clean(c.WorkingDir)
	}

	uid, gid := securityIDs(pod, c)
	effective := opts.UID
	if opts.Root {
		p.UID, p.GID = uid, gid
		if uid != nil {
			effective = *uid
		}
	}
	if nonRoot(pod, c) && effective == 0 {
		return Process{}, &Error{Reason: ReasonCreateContainerConfigError, Message: fmt.Sprintf(
			"container has runAsNonRoot and image will run as root (pod: %q, container: %s)", PodRef(pod), c.Name)}
	}

	p.Env = mergeEnv(opts, pod, env)
	return p, nil
}

// securityIDs returns runAsUser and runAsGroup, the container's overriding
// the pod's.
func securityIDs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

func nonRoot(pod *corev1.Pod, c *corev1.Container) bool {
	v := false
	if psc := pod.Spec.SecurityContext; psc != nil && psc.RunAsNonRoot != nil {
		v = *psc.RunAsNonRoot
	}
	if sc := c.SecurityContext; sc != nil && sc.RunAsNonRoot != nil {
		v = *sc.RunAsNonRoot
	}
	return v
}

// mergeEnv puts the node's base variables, HOSTNAME, the bind address and
// the service links first (the links sorted by name) and the container's
// own after them; a container variable replaces any of the others of the
// same name.
func mergeEnv(opts Options, pod *corev1.Pod, env []EnvVar) []string {
	own := make(map[string]bool, len(env))
	for _, e := range env {
		own[e.Name] = true
	}
	out := make([]string, 0, len(opts.BaseEnv)+2+len(opts.ServiceEnv)+len(env))
	seen := map[string]bool{}
	add := func(k, v string) {
		if own[k] || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, k+"="+v)
	}
	for _, kv := range opts.BaseEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			add(k, v)
		}
	}
	add(EnvHostname, Hostname(pod))
	if opts.BindAddress != "" {
		add(EnvBindAddress, opts.BindAddress)
	}
	for _, k := range slices.Sorted(maps.Keys(opts.ServiceEnv)) {
		add(k, opts.ServiceEnv[k])
	}
	for _, e := range env {
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

// Hostname is the hostname a container of pod sees in Kubernetes:
// spec.hostname, else the pod's name, cut to 63 characters without a
// trailing '-' or '.'.
func Hostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// PodRef is how the kubelet names a pod in messages: name_namespace(uid).
func PodRef(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}
