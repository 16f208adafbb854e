// Package version says which berth this is and which Kubernetes API level it follows.
package version

import (
	"runtime"

	"k8s.io/apimachinery/pkg/version"
)

// Berth is berth's own version; release builds set it with -ldflags "-X".
var Berth = "v0.1.0-dev"

// KubernetesAPI is the Kubernetes release whose API berth follows. The kubectl
// dispatcher on these machines picks its own version from /version, so this
// must name a release that kubectl 1.32 speaks to.
const KubernetesAPI = "v1.32.4"

// Info is what `berth version` prints.
type Info struct {
	Berth      string
	GitVersion string
	GoVersion  string
}

// Get returns the version information of this binary.
func Get() Info {
	return Info{Berth: Berth, GitVersion: KubernetesAPI, GoVersion: runtime.Version()}
}

// Kubernetes returns the body of GET /version, in the shape kubectl expects.
func Kubernetes() version.Info {
	return version.Info{
		Major:      "1",
		Minor:      "32",
		GitVersion: KubernetesAPI + "+berth",
		GitCommit:  "berth-" + Berth,
		GoVersion:  runtime.Version(),
		Compiler:   runtime.Compiler,
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
	}
}
