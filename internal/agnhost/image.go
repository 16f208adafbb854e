package agnhost

import (
	"path"
	"strings"
)

// repositories are the names the agnhost image has been published under.
var repositories = map[string]bool{
	"registry.k8s.io/e2e-test-images/agnhost":   true,
	"k8s.gcr.io/e2e-test-images/agnhost":        true,
	"gcr.io/kubernetes-e2e-test-images/agnhost": true,
}

// IsImage reports whether image (with any tag or digest) is the agnhost
// e2e test image, e.g. "registry.k8s.io/e2e-test-images/agnhost:2.53".
func IsImage(image string) bool {
	repo := image
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	// A tag follows the last ':' after the last '/'; a ':' before it is a
	// registry port.
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return repositories[repo]
}

// ContainerArgs returns the arguments for Main (subcommand first) that a
// container of the agnhost image runs, given its command and args as in the
// Pod spec, and false when the command is not agnhost (e.g. /bin/sh), which
// berth cannot run from the image.
//
// The image has ENTRYPOINT ["/agnhost"] and CMD ["pause"], and Kubernetes
// drops the image's CMD whenever command or args is set, so:
// no command and no args runs "pause"; no command runs args; a command of
// /agnhost (or its alias agnhost-2) runs the rest of command, then args.
func ContainerArgs(command, args []string) ([]string, bool) {
	if len(command) == 0 {
		if len(args) == 0 {
			return []string{"pause"}, true
		}
		return append([]string(nil), args...), true
	}
	if base := path.Base(command[0]); base != "agnhost" && base != "agnhost-2" {
		return nil, false
	}
	out := append([]string(nil), command[1:]...)
	return append(out, args...), true
}
