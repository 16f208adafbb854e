package agnhost

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// Environment variables the agent sets for the process; see the package doc.
const (
	EnvHostname    = "HOSTNAME"
	EnvBindAddress = "BERTH_BIND_ADDRESS"
)

// ExitError asks the caller to end the process with Code, where upstream
// agnhost calls os.Exit(Code) (netexec's /exit and /shutdown, pause on a
// signal). Code is passed through unchanged, as upstream does.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("agnhost: exit status %d", e.Code)
}

// ExitCode maps an error returned by Main to the process exit code: 0 for
// nil, the code of an *ExitError, and 1 for anything else (upstream's
// log.Fatal).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	return 1
}

// subcommand runs one agnhost subcommand until ctx is cancelled.
type subcommand func(ctx context.Context, args []string, rt *runtime) error

// subcommands lists what berth implements; everything else in upstream
// agnhost is rejected with this list.
var subcommands = map[string]subcommand{
	"netexec":        runNetexec,
	"pause":          runPause,
	"serve-hostname": runServeHostname,
}

// Subcommands returns the names of the agnhost subcommands berth implements.
func Subcommands() []string {
	names := make([]string, 0, len(subcommands))
	for name := range subcommands {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Main runs the agnhost subcommand args[0] with the flags in args[1:], as
// `agnhost <subcommand> [flags]` would. It returns when ctx is cancelled
// (the caller cancels it on SIGTERM/SIGINT; a context made by
// signal.NotifyContext lets pause tell the two apart), after shutting its
// servers down, or earlier with an *ExitError or another error; use ExitCode
// to turn the result into the process exit code. --help prints the usage to
// stdout and returns nil.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, newRuntime(stdout, stderr, os.Getenv))
}

func run(ctx context.Context, args []string, rt *runtime) error {
	if len(args) == 0 {
		return fmt.Errorf("agnhost: missing subcommand; usage: agnhost <subcommand> [flags], subcommands: %s",
			strings.Join(Subcommands(), ", "))
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		return fmt.Errorf("agnhost: unknown subcommand %q; berth implements: %s",
			args[0], strings.Join(Subcommands(), ", "))
	}
	return cmd(ctx, args[1:], rt)
}

// runtime is what a subcommand takes from its surroundings, so tests can
// replace the process environment and learn the ports a server bound.
type runtime struct {
	stdout io.Writer
	log    *log.Logger
	getenv func(string) string
	// osHostname is the fallback when HOSTNAME is unset.
	osHostname func() (string, error)
	// uploadDir is where netexec's /upload writes (upstream: /uploads).
	uploadDir string
	// shell runs netexec's /shell commands (upstream: /bin/sh).
	shell string
	// listening, when set, is told every address a server has bound
	// ("http", "udp", "tcp"); tests pass port 0 and read the port here.
	listening func(kind string, addr net.Addr)
}

func newRuntime(stdout, stderr io.Writer, getenv func(string) string) *runtime {
	return &runtime{
		stdout:     stdout,
		log:        log.New(stderr, "", log.LstdFlags),
		getenv:     getenv,
		osHostname: os.Hostname,
		uploadDir:  "/uploads",
		shell:      "/bin/sh",
	}
}

// hostname is the Pod's hostname: HOSTNAME when set, else the host's.
func (rt *runtime) hostname() (string, error) {
	if h := rt.getenv(EnvHostname); h != "" {
		return h, nil
	}
	h, err := rt.osHostname()
	if err != nil {
		return "", fmt.Errorf("get hostname: %w", err)
	}
	return h, nil
}

// bindHost is the host part of every listen address: "" (all interfaces,
// as upstream) unless BERTH_BIND_ADDRESS names the Pod IP.
func (rt *runtime) bindHost() (string, error) {
	v := strings.TrimSpace(rt.getenv(EnvBindAddress))
	if v == "" {
		return "", nil
	}
	addr, err := netip.ParseAddr(v)
	if err != nil {
		return "", fmt.Errorf("%s=%q is not an IP address: %w", EnvBindAddress, v, err)
	}
	return addr.String(), nil
}

func (rt *runtime) bound(kind string, addr net.Addr) {
	if rt.listening != nil {
		rt.listening(kind, addr)
	}
}

// errHelp reports that --help was served; subcommands return nil for it.
var errHelp = errors.New("help requested")

// newFlagSet returns a flag set for one subcommand. Like upstream (cobra,
// hence pflag syntax) it also accepts klog's flags, which some e2e tests pass
// to every agnhost subcommand; berth ignores their values.
func newFlagSet(name string, rt *runtime) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(rt.stdout, "Usage:\n  agnhost %s [flags]\n\nFlags:\n%s", name, fs.FlagUsages())
	}
	for _, f := range loggingFlags() {
		pf := fs.VarPF(ignoredValue{}, f.name, "", "klog flag, accepted and ignored by berth")
		if f.isBool {
			pf.NoOptDefVal = "true"
		}
	}
	return fs
}

// parseFlags parses args and rejects positional arguments, as upstream's
// cobra.MaximumNArgs(0) does.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("agnhost %s: %w", fs.Name(), err)
	}
	if rest := fs.Args(); len(rest) > 0 {
		return fmt.Errorf("agnhost %s: takes no positional arguments, got %q", fs.Name(), rest)
	}
	return nil
}

type loggingFlag struct {
	name   string
	isBool bool
}

// loggingFlags lists klog's flag names once; only the names are taken, so
// parsing them never touches klog's global settings.
var loggingFlags = sync.OnceValue(func() []loggingFlag {
	gfs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(gfs)
	var out []loggingFlag
	gfs.VisitAll(func(f *goflag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		out = append(out, loggingFlag{name: f.Name, isBool: ok && b.IsBoolFlag()})
	})
	return out
})

// ignoredValue accepts any value.
type ignoredValue struct{}

func (ignoredValue) String() string   { return "" }
func (ignoredValue) Set(string) error { return nil }
func (ignoredValue) Type() string     { return "string" }
