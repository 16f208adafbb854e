package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berth-project/berth/bench/backend"
	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "backend" || os.Args[1] == "miniproxy") {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		run := backend.Main
		if os.Args[1] == "miniproxy" {
			run = backend.ProxyMain
		}
		if err := run(ctx, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench "+os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	out     string
	smoke   bool
	only    []string
	berth   string
	etcd    string
	kubectl string
	soak    time.Duration
	keep    bool
	verbose bool
	profile string
	// nftChild and childAgent are set by the parent run when it starts
	// itself in a network namespace for the nftables data path.
	nftChild   string
	childAgent bool
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var only string
	fs.StringVar(&o.out, "out", "bench/results", "directory for the report (YYYY-MM-DD.md, latest.md, charts, JSON)")
	fs.BoolVar(&o.smoke, "smoke", false, "run every benchmark at tiny sizes, a few seconds each (what CI runs)")
	fs.StringVar(&only, "only", "", "comma-separated benchmarks to run: "+strings.Join(benchmarkNames(), ", ")+" (reliability = "+strings.Join(reliabilityNames, ",")+")")
	fs.StringVar(&o.berth, "berth", os.Getenv("BERTH_BIN"), "berth binary (default $BERTH_BIN, else built from ./cmd/berth)")
	fs.StringVar(&o.etcd, "etcd", os.Getenv("BERTH_ETCD_BIN"), "etcd binary for the storage peer (default $BERTH_ETCD_BIN, else built from ./test/tools/etcd)")
	fs.StringVar(&o.kubectl, "kubectl", envOr("KUBECTL", "/usr/bin/kubectl"), "kubectl binary")
	fs.DurationVar(&o.soak, "soak", 0, "soak duration (default 10m, smoke 5s)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data dirs, process logs) for debugging")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	fs.StringVar(&o.profile, "profile", "", "record perf(1) CPU profiles of the forwarding processes during the data-path latency runs into this directory (profiles perturb the figures: not for the report)")
	fs.StringVar(&o.nftChild, "nftables-child", "", "internal: run as the data path's nftables child in the current (fresh) network namespace and write its results to this JSON file")
	fs.BoolVar(&o.childAgent, "child-agent", false, "internal: with -nftables-child, whether the parent found the node agent working")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench [flags]\n\nberth's benchmark and reliability harness; see bench/README.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (flags only; see -h)", fs.Args())
	}
	sel, err := selectBenchmarks(only)
	if err != nil {
		return o, err
	}
	o.only = sel
	if o.soak < 0 {
		return o, fmt.Errorf("-soak %s must not be negative", o.soak)
	}
	return o, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// selectBenchmarks turns -only into benchmark names (all when empty).
func selectBenchmarks(only string) ([]string, error) {
	if strings.TrimSpace(only) == "" {
		return benchmarkNames(), nil
	}
	known := benchmarkNames()
	var out []string
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(strings.ToLower(n))
		switch {
		case n == "":
		case n == "reliability":
			out = append(out, reliabilityNames...)
		case slices.Contains(known, n):
			out = append(out, n)
		default:
			return nil, fmt.Errorf("-only: unknown benchmark %q (known: %s, reliability)", n, strings.Join(known, ", "))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-only names no benchmark")
	}
	// Keep the report's order whatever order -only gave.
	var ordered []string
	for _, k := range known {
		if slices.Contains(out, k) {
			ordered = append(ordered, k)
		}
	}
	return ordered, nil
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create -out %s: %w", o.out, err)
	}
	tmp, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() {
		if o.keep {
			log.Info("kept the temporary directory", "dir", tmp)
			return
		}
		if err := os.RemoveAll(tmp); err != nil {
			log.Warn("remove temp dir", "dir", tmp, "err", err)
		}
	}()
	procs, err := proc.NewGroup(filepath.Join(tmp, "logs"), log)
	if err != nil {
		return err
	}
	defer func() {
		if left := procs.StopAll(10 * time.Second); len(left) > 0 {
			log.Warn("killed leftover processes at exit", "count", len(left))
		}
	}()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if o.berth == "" {
		if o.berth, err = build(ctx, log, root, "./cmd/berth", filepath.Join(tmp, "bin", "berth")); err != nil {
			return err
		}
	}
	if o.etcd == "" && needsEtcd(o.only) && o.nftChild == "" {
		if o.etcd, err = build(ctx, log, root, "./test/tools/etcd", filepath.Join(tmp, "bin", "etcd")); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the bench binary: %w", err)
	}
	// A copy in the run's directory: `go run` may remove its own binary
	// before the pods that run it are gone.
	benchBin := filepath.Join(tmp, "bin", "bench")
	if err := copyFile(self, benchBin); err != nil {
		return err
	}

	mode := "full"
	if o.smoke {
		mode = "smoke"
	}
	date := started.Format("2006-01-02")
	rep := &report.Report{Date: date, Mode: mode, Started: started, Command: "go run ./bench " + strings.Join(args, " ")}
	r := &runner{
		env:   &cluster.Env{Berth: o.berth, Kubectl: o.kubectl, Etcd: o.etcd, Dir: tmp, Procs: procs, Log: log},
		sz:    sizesFor(o),
		smoke: o.smoke,
		out:   o.out,
		date:  date,
		rep:   rep,
		bench: benchBin,
		root:  root,
		log:   log,
	}
	r.env.ServerArgs = cluster.DefaultServerArgs(ctx, o.berth)
	if o.nftChild != "" {
		r.agentOK, r.agentReason = o.childAgent, "as the parent run found it"
		return r.nftablesChild(ctx, o.nftChild)
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return fmt.Errorf("create -profile %s: %w", o.profile, err)
		}
		r.prof = &profiler{dir: o.profile, r: r}
		rep.Notes = append(rep.Notes, "**Profiled run** (-profile): perf sampled the forwarding processes during the first data-path round, which perturbs the figures.")
	}
	rep.Machine = machineFacts(ctx, r)
	rep.Machine = append(rep.Machine, report.Fact{Name: "berth server flags used", Value: "`" + strings.Join(r.env.ServerArgs, " ") + "`"})
	if slices.ContainsFunc(o.only, func(n string) bool { return benchmarkByName(n).agent != agentNo }) {
		r.checkAgent(ctx)
	}
	rep.Notes = append(rep.Notes, r.agentNote())
	rep.Notes = append(rep.Notes, "Charts are drawn with gonum.org/v1/plot v0.17.0.")
	if err := r.runAll(ctx, o.only); err != nil {
		return err
	}
	rep.Duration = time.Since(started)
	rep.Machine = append(rep.Machine, report.Fact{Name: "load average at the end", Value: loadAvg()})
	if err := r.write(true); err != nil {
		return err
	}
	if failed := rep.Failures(); o.smoke && len(failed) > 0 {
		// The smoke run is there to catch a harness that no longer works.
		return fmt.Errorf("smoke run: %d failure(s): %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// moduleRoot is the directory of berth's go.mod, found upwards from the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/berth-project/berth\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the berth repository (no go.mod of github.com/berth-project/berth above the working directory)")
		}
		dir = parent
	}
}

func build(ctx context.Context, log *slog.Logger, root, pkg, out string) (string, error) {
	t := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	log.Info("built", "package", pkg, "took", time.Since(t).Round(time.Millisecond).String())
	return out, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	return nil
}

// write saves the report as <date>.md, <date>.json and latest.md.
func (r *runner) write(final bool) error {
	md := r.rep.Markdown()
	base := filepath.Join(r.out, r.date)
	if err := os.WriteFile(base+".md", []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.out, "latest.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write latest.md: %w", err)
	}
	if err := r.rep.WriteJSON(base + ".json"); err != nil {
		return err
	}
	if final {
		r.log.Info("report written", "markdown", base+".md", "latest", filepath.Join(r.out, "latest.md"), "took", r.rep.Duration.Round(time.Second).String())
	}
	return nil
}
