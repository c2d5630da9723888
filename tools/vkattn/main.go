// Command vkattn lists Vulkan devices, runs a checked and timed FlashAttention forward, sweeps
// benchmark shapes (optionally beside PyTorch's scaled_dot_product_attention) and runs the kernel
// conformance suite on any device.
//
//	vkattn devices        devices, their profiles and the tier and kernel each operation gets
//	vkattn run            one forward on the default device, checked against the oracle, timed
//	vkattn bench          a shape sweep (FlashAttention-2 paper shapes on a GPU)
//	vkattn decode-bench   Decode over key lengths (B=8, Hq=32, Hk=8, d=128, fp16 on a GPU)
//	vkattn cache-bench    KV cache sequences grown while decoding, against a preallocated cache
//	vkattn conformance    the conformance suite; JSON and Markdown report
//
// Run "vkattn COMMAND -h" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := vkattn(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// command is one subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"devices", "list Vulkan devices, their capabilities and the kernel each operation gets", cmdDevices},
	{"run", "run one forward on a device, check it against the float64 oracle and time it", cmdRun},
	{"bench", "time the forward over a sweep of shapes (and PyTorch SDPA with -torch)", cmdBench},
	{"decode-bench", "time Decode over key lengths in GB/s of K and V (and PyTorch SDPA with -torch)", cmdDecodeBench},
	{"cache-bench", "grow KV cache sequences while decoding; step times vs a preallocated cache, page commit cost", cmdCacheBench},
	{"conformance", "run the kernel conformance suite and write a JSON and Markdown report", cmdConformance},
}

func usage(w io.Writer) {
	fmt.Fprint(w, "vkattn runs FlashAttention as Vulkan compute shaders.\n\nUsage:\n\n\tvkattn COMMAND [flags]\n\nCommands:\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun \"vkattn COMMAND -h\" for a command's flags. $VKATTN_DEVICE picks the default device\n"+
		"(an index or a name substring); $VKATTN_TIER forces a tier where a command leaves it automatic.\n")
}

// vkattn runs the command line args (without the program name).
func vkattn(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

// usageError is a bad command line: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// errFailed means a check failed after its details were printed: exit status 1, no more text.
var errFailed = errors.New("failed")

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFailed):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "vkattn:", err)
		return 2
	}
	fmt.Fprintln(stderr, "vkattn:", err)
	return 1
}

// newFlags makes a flag set whose errors come back (as usage errors) instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vkattn %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; extra positional arguments are an error.
func parse(fs *flag.FlagSet, args []string) error {
	// A trailing -h asks for help even where -h is a flag of its own (run's head count).
	if n := len(args); n > 0 && (args[n-1] == "-h" || args[n-1] == "--h") && fs.Lookup("h") != nil {
		fs.Usage()
		return flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// flagSet reports which flags the command line set.
func flagSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// deviceFlags are the flags of every command that opens a device.
type deviceFlags struct {
	device     string
	validation bool
	cacheDir   string
	stats      bool
}

func (d *deviceFlags) register(fs *flag.FlagSet, validationDefault bool, validationHelp string) {
	fs.StringVar(&d.device, "device", "", "device index or name substring (default $"+devices.DeviceEnv+", else the first GPU, else lavapipe)")
	fs.BoolVar(&d.validation, "validation", validationDefault, validationHelp)
	fs.StringVar(&d.cacheDir, "pipeline-cache", "", "directory of the on-disk pipeline cache (default the user cache dir; - for none)")
	fs.BoolVar(&d.stats, "stats", false, "print the driver's statistics of each kernel compiled (registers, spills, ...; needs VK_KHR_pipeline_executable_properties)")
}

// printStats prints, when -stats was given, the driver's statistics of every kernel the engine
// compiled, or why there are none.
func (d *deviceFlags) printStats(w io.Writer, e *attention.Engine) {
	if !d.stats {
		return
	}
	ks, err := e.KernelStatistics()
	if err != nil {
		fmt.Fprintf(w, "stats:   not available: %v\n", err)
		return
	}
	for _, k := range ks {
		fmt.Fprintf(w, "stats:   %s %v\n", k.Kernel, k.Specialization)
		for _, x := range k.Executables {
			fmt.Fprintf(w, "         %s (subgroup %d):", x.Name, x.SubgroupSize)
			for _, st := range x.Statistics {
				fmt.Fprintf(w, " %s=%s", st.Name, strconv.FormatFloat(st.Value, 'f', -1, 64)) // integers in full
			}
			fmt.Fprintln(w)
		}
	}
}

// open opens an engine; onMessage receives validation and driver messages.
func (d *deviceFlags) open(onMessage func(vk.Message)) (*attention.Engine, error) {
	e, err := attention.New(attention.Config{Device: d.device, Validation: d.validation, OnMessage: onMessage,
		PipelineCacheDir: d.cacheDir, PipelineStatistics: d.stats})
	if err != nil {
		switch {
		case d.device != "" || os.Getenv(devices.DeviceEnv) != "":
			return nil, fmt.Errorf("%w\n(`vkattn devices` lists the devices; -device and $%s take an index or a name substring)", err, devices.DeviceEnv)
		case errors.Is(err, vk.ErrNoVulkan) || errors.Is(err, vk.ErrNoDevice) || errors.Is(err, vk.ErrIncompatibleDriver):
			return nil, fmt.Errorf("%w\n(is a Vulkan driver installed? on a machine without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)", err)
		}
		return nil, err
	}
	return e, nil
}

// printMessages returns an OnMessage that prints messages of at least min severity to w.
func printMessages(w io.Writer, min vk.Severity) func(vk.Message) {
	return func(m vk.Message) {
		if m.Severity >= min {
			fmt.Fprintf(w, "vulkan %s\n", m)
		}
	}
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(name, s string) ([]int, error) { return parseIntsFrom(name, s, 1) }

// parseIntsFrom parses a comma-separated list of integers of at least least.
func parseIntsFrom(name, s string, least int) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < least {
			if least == 1 {
				return nil, usageError{fmt.Errorf("-%s: %q is not a positive integer", name, f)}
			}
			return nil, usageError{fmt.Errorf("-%s: %q is not an integer >= %d", name, f, least)}
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("-%s: empty list", name)}
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseTiers parses a list of tier names; "all" or "" means every tier the engine runs.
func parseTiers(s string, available []devices.Tier) ([]devices.Tier, error) {
	if s = strings.TrimSpace(s); s == "" || s == "all" {
		return available, nil
	}
	var out []devices.Tier
	for _, f := range splitList(s) {
		t, err := devices.ParseTier(f)
		if err != nil {
			return nil, usageError{err}
		}
		if t != devices.TierAuto && !slices.Contains(available, t) {
			return nil, fmt.Errorf("tier %s does not run on this device (it runs %s)", t, tierNames(available))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// checkTierNames checks the syntax of a -tiers list before a device is opened; extra are
// further accepted names.
func checkTierNames(flagName, s string, extra ...string) error {
	for _, f := range splitList(s) {
		if f == "all" || slices.Contains(extra, f) {
			continue
		}
		if _, err := devices.ParseTier(f); err != nil {
			return usageError{fmt.Errorf("-%s: %w", flagName, err)}
		}
	}
	return nil
}

func tierNames(ts []devices.Tier) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// flopConvention is how every command counts the work of a forward.
const flopConvention = "FLOPs = 4·B·H·Lq·Lk·d, halved when causal and Lq = Lk (the FlashAttention/PyTorch convention)"

// forwardFLOPs counts the work of a forward by flopConvention.
func forwardFLOPs(b, h, lq, lk, d int, causal bool) float64 {
	f := 4 * float64(b) * float64(h) * float64(lq) * float64(lk) * float64(d)
	if causal && lq == lk {
		f /= 2
	}
	return f
}

// median of a non-empty sample.
func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// autoIters is the number of timed runs that take about target, given one run's time, at least
// min and at most max, but no more than budget allows (and then at least 1).
func autoIters(one, target, budget time.Duration, minIters, maxIters int) int {
	if one <= 0 {
		return maxIters
	}
	n := int((target + one - 1) / one)
	n = max(minIters, min(n, maxIters))
	if fit := int(budget / one); n > fit {
		n = max(1, fit)
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func tflops(flops float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return flops / d.Seconds() / 1e12
}

func bytesString(n uint64) string {
	switch {
	case n == 0:
		return "-"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// tierOf names the tier of a kernel variant.
func tierOf(kernel string) string {
	v, err := shaders.Lookup(kernel)
	if err != nil {
		return "?"
	}
	return v.Tier.String()
}

// rateString formats a TFLOP/s figure, with GFLOP/s beside it when it is small (CPU devices).
func rateString(tf float64) string {
	if tf < 0.1 {
		return fmt.Sprintf("%.3g TFLOP/s = %.3g GFLOP/s", tf, tf*1e3)
	}
	return fmt.Sprintf("%.2f TFLOP/s", tf)
}
