package runtime

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// ErrExecutableNotFound means argv[0] is not an executable file, neither as
// given nor in the container's PATH. The agent shows it as a waiting reason
// (the kubelet's RunContainerError); errors.Is finds it in Start's and Exec's
// errors, which name the executable.
var ErrExecutableNotFound = errors.New("executable file not found")

// DefaultPath is the PATH used to find argv[0], and given to the process,
// when the container's environment has none; containerd uses the same.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ContainerSpec describes one container attempt.
type ContainerSpec struct {
	// ID names the container's state directory: unique per attempt and
	// filesystem-safe, e.g. <podUID>_<container>_<attempt>.
	ID string `json:"id"`
	// Pod identity, recorded for adoption after a restart; not interpreted.
	PodUID        string `json:"podUID,omitempty"`
	PodNamespace  string `json:"podNamespace,omitempty"`
	PodName       string `json:"podName,omitempty"`
	ContainerName string `json:"containerName,omitempty"`
	Attempt       int    `json:"attempt,omitempty"`

	// Argv is the command; Argv[0] is looked up in PATH of Env when it has
	// no slash, and taken relative to Dir when it is a relative path.
	Argv []string `json:"argv"`
	// Env is the whole environment, KEY=VALUE. PATH=DefaultPath is added
	// when it has no PATH.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; "" means "/".
	Dir string `json:"dir,omitempty"`
	// UID and GID, when set, are the identity the process runs as (berth must
	// be root to change them). With only UID set, GID is that user's primary
	// group from /etc/passwd, or 0. Supplementary groups are cleared.
	UID *int64 `json:"uid,omitempty"`
	GID *int64 `json:"gid,omitempty"`
	// NetNSPath is a network namespace file (e.g. /var/run/netns/NAME) to run
	// in; "" means the host's namespace.
	NetNSPath string `json:"netnsPath,omitempty"`

	// LogPath is the CRI-format log file for stdout and stderr; "" discards
	// the output. LogMaxBytes and LogMaxFiles configure rotation as
	// logs.WriterConfig's MaxBytes and MaxFiles do.
	LogPath     string `json:"logPath,omitempty"`
	LogMaxBytes int64  `json:"logMaxBytes,omitempty"`
	LogMaxFiles int    `json:"logMaxFiles,omitempty"`
}

// ExecSpec describes a one-off command run next to a container (exec probes,
// kubectl exec).
type ExecSpec struct {
	// NetNSPath, Argv, Env, Dir, UID and GID mean what they mean in
	// ContainerSpec.
	NetNSPath string
	Argv      []string
	Env       []string
	Dir       string
	UID, GID  *int64
	// Stdin, Stdout and Stderr connect the command; nil means /dev/null. An
	// *os.File is passed as it is; other readers and writers are copied
	// through pipes.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// idPattern keeps IDs usable as one path element everywhere.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$`)

func validateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid container id %q: want 1-200 of [A-Za-z0-9_.-], starting with a letter or digit", id)
	}
	return nil
}

// validateProcess checks what both containers and execs need.
func validateProcess(argv, env []string, dir string, uid, gid *int64) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("empty command")
	}
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %q contains a NUL byte", a)
		}
	}
	for _, e := range env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("invalid environment entry %q: want KEY=VALUE", e)
		}
	}
	if dir != "" && !filepath.IsAbs(dir) {
		return fmt.Errorf("working directory %q is not absolute", dir)
	}
	for name, id := range map[string]*int64{"uid": uid, "gid": gid} {
		if id != nil && (*id < 0 || *id > math.MaxUint32-1) {
			return fmt.Errorf("invalid %s %d", name, *id)
		}
	}
	return nil
}

func (s *ContainerSpec) validate() error {
	if err := validateID(s.ID); err != nil {
		return err
	}
	if err := validateProcess(s.Argv, s.Env, s.Dir, s.UID, s.GID); err != nil {
		return fmt.Errorf("container %s: %w", s.ID, err)
	}
	if s.LogPath != "" && !filepath.IsAbs(s.LogPath) {
		return fmt.Errorf("container %s: log path %q is not absolute", s.ID, s.LogPath)
	}
	if (s.LogMaxBytes > 0 && s.LogMaxFiles == 1) || s.LogMaxFiles < 0 {
		return fmt.Errorf("container %s: log max files %d: want 0 (default) or at least 2", s.ID, s.LogMaxFiles)
	}
	return nil
}

// processEnv returns env with PATH added if missing, and the PATH to search.
func processEnv(env []string) ([]string, string) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return env, v
		}
	}
	out := make([]string, len(env), len(env)+1)
	copy(out, env)
	return append(out, "PATH="+DefaultPath), DefaultPath
}

func workDir(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

// lookPath resolves argv0 the way a container runtime does inside the
// container: a name with a slash is used as it is (relative to dir), a bare
// name is searched in path. It returns an error wrapping
// ErrExecutableNotFound, or fs.ErrPermission for a match that is not
// executable.
func lookPath(argv0, path, dir string) (string, error) {
	dir = workDir(dir)
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%q: %w", argv0, err)
		}
		return p, nil
	}
	var denied error
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, argv0)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, fs.ErrPermission) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", fmt.Errorf("%q: %w", argv0, denied)
	}
	return "", fmt.Errorf("%q in $PATH (%s): %w", argv0, path, ErrExecutableNotFound)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return ErrExecutableNotFound
		}
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory: %w", fs.ErrPermission)
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("not executable: %w", fs.ErrPermission)
	}
	return nil
}

// credential is the identity for uid/gid, nil to keep berth's own.
func credential(uid, gid *int64) (*syscall.Credential, error) {
	if uid == nil && gid == nil {
		return nil, nil
	}
	euid, egid := int64(os.Geteuid()), int64(os.Getegid())
	if euid != 0 {
		if (uid == nil || *uid == euid) && (gid == nil || *gid == egid) {
			return nil, nil
		}
		return nil, fmt.Errorf("running as uid %v gid %v needs root (berth runs as uid %d)", deref(uid), deref(gid), euid)
	}
	c := &syscall.Credential{}
	if uid != nil {
		c.Uid = uint32(*uid)
	}
	switch {
	case gid != nil:
		c.Gid = uint32(*gid)
	case uid != nil:
		c.Gid = primaryGroup(*uid)
	}
	return c, nil
}

func primaryGroup(uid int64) uint32 {
	u, err := user.LookupId(strconv.FormatInt(uid, 10))
	if err != nil {
		return 0
	}
	g, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(g)
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}
