package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// Bench defaults: the FlashAttention-2 paper's shapes on a GPU (16k tokens per batch, hidden
// 2048), a sweep that takes about a minute on a CPU device (lavapipe).
var (
	gpuBench = benchDefaults{tokens: 16384, hidden: 2048, d: "64,128", l: "512,1024,2048,4096,8192,16384"}
	cpuBench = benchDefaults{tokens: 2048, hidden: 256, d: "64", l: "256,512"}
)

type benchDefaults struct {
	tokens, hidden int
	d, l           string
}

// Timing of each row with -iters 0: enough runs for about benchTarget, at least 3, no more
// than fit in benchBudget (then at least 1).
// Automatic warm-up: about benchWarm of untimed runs (at most benchMaxWarm runs), so a GPU idle
// before the row (after generating its inputs, or the PyTorch pass) is back at full clocks when
// timing starts. 100 ms was not enough on the H100: decode rows timed right after their inputs
// were generated ran some of their timed runs 3.4x slower than others (min 2.9 ms, median 9.9 ms in
// one submission), as a kernel bound partly by instruction issue does at an idle clock.
const (
	benchTarget  = 500 * time.Millisecond
	benchBudget  = 3 * time.Second
	benchWarm    = time.Second
	benchMaxWarm = 5000
)

// naiveTier is the -tiers name of the naive (non-fused) baseline kernel.
const naiveTier = "naive"

type benchFlags struct {
	d, l, tokens, hidden, causal, dtypes, tiers string
	iters, warmup                               int
	jsonFile, python, script                    string
	dev                                         deviceFlags
}

// benchShape is one problem of the sweep.
type benchShape struct {
	DType  string `json:"dtype"`
	B      int    `json:"b"`
	H      int    `json:"h"`
	L      int    `json:"l"`
	D      int    `json:"d"`
	Causal bool   `json:"causal"`
}

func (s benchShape) String() string {
	c := ""
	if s.Causal {
		c = " causal"
	}
	return fmt.Sprintf("%s d=%d L=%d%s (B=%d H=%d)", s.DType, s.D, s.L, c, s.B, s.H)
}

func (s benchShape) flops() float64 { return forwardFLOPs(s.B, s.H, s.L, s.L, s.D, s.Causal) }

// timing is what a row of every bench says of its runs: the tier forced, the kernel that ran,
// the runs and their median and least times.
type timing struct {
	Tier     string  `json:"tier"`
	Kernel   string  `json:"kernel,omitempty"`
	Warmup   int     `json:"warmup"`
	Iters    int     `json:"iters"`
	MedianMS float64 `json:"median_ms,omitempty"`
	MinMS    float64 `json:"min_ms,omitempty"`
}

// benchRow is one timed (shape, tier).
type benchRow struct {
	benchShape
	timing
	TFLOPS float64 `json:"tflops,omitempty"`
	Error  string  `json:"error,omitempty"`
	// PyTorch SDPA on the same shape (with -torch): TFLOP/s per backend, null where it failed.
	Torch       map[string]*float64 `json:"torch_tflops,omitempty"`
	TorchErrors map[string]string   `json:"torch_errors,omitempty"`
	VsFlash     *float64            `json:"vs_flash,omitempty"` // TFLOPS / the flash backend's
	VsCudnn     *float64            `json:"vs_cudnn,omitempty"`
}

// benchReport is what -json writes.
type benchReport struct {
	Device     string         `json:"device"`
	Driver     string         `json:"driver"`
	Vulkan     string         `json:"vulkan"`
	Date       time.Time      `json:"date"`
	Convention string         `json:"flops"`
	Torch      map[string]any `json:"torch,omitempty"` // the PyTorch script's header line
	Rows       []benchRow     `json:"rows"`
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "Times the forward over a sweep of shapes: B = tokens/L sequences of length L, H = hidden/d\n"+
		"heads of dim d, at every tier the device runs and the naive baseline. On a GPU the defaults are\n"+
		"the FlashAttention-2 paper's shapes (16k tokens, hidden 2048, d 64 and 128, L 512 to 16k); on a CPU\n"+
		"device a small sweep. Progress goes to stderr, the table to stdout.", stderr)
	var f benchFlags
	fs.StringVar(&f.d, "d", gpuBench.d, "head dims (list; CPU device default "+cpuBench.d+")")
	fs.StringVar(&f.l, "l", gpuBench.l, "sequence lengths (list; CPU device default "+cpuBench.l+")")
	fs.StringVar(&f.tokens, "tokens", fmt.Sprint(gpuBench.tokens), fmt.Sprintf("tokens per batch: B = tokens/L, at least 1 (CPU device default %d)", cpuBench.tokens))
	fs.StringVar(&f.hidden, "hidden", fmt.Sprint(gpuBench.hidden), fmt.Sprintf("hidden size: H = hidden/d (CPU device default %d)", cpuBench.hidden))
	fs.StringVar(&f.causal, "causal", "both", "causal mask: both, true or false")
	fs.StringVar(&f.dtypes, "dtype", "f16", "storage types (list of f32, f16, bf16)")
	fs.StringVar(&f.tiers, "tiers", "all", "tiers (list of scalar, subgroup, coopmat, coopmat2, auto, "+naiveTier+"; all = every tier the device runs, and "+naiveTier+")")
	fs.IntVar(&f.iters, "iters", 0, fmt.Sprintf("timed runs per row (0 = about %v of runs, at least 3 unless a run is slow)", benchTarget))
	fs.IntVar(&f.warmup, "warmup", -1, "untimed runs before the timed ones (-1 = automatic: about 1 s of runs, at most 5000; none for a slow run)")
	fs.StringVar(&f.jsonFile, "json", "", "write every row (and the device) as JSON to this file")
	fs.StringVar(&f.python, "torch", "", "python interpreter with PyTorch and CUDA: also time PyTorch SDPA (flash, cudnn, efficient, math) on the same shapes")
	fs.StringVar(&f.script, "torch-script", "", "path of tools/torch/sdpa_bench.py (default: found from the working directory or the executable)")
	f.dev.register(fs, false, "enable the Khronos validation layer (slow; any validation error fails the bench)")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := flagSet(fs)
	causals, err := parseCausal(f.causal)
	if err != nil {
		return err
	}
	var dts []memory.DType
	for _, s := range splitList(f.dtypes) {
		dt, err := memory.ParseDType(s)
		if err != nil {
			return usageError{err}
		}
		dts = append(dts, dt)
	}
	if len(dts) == 0 {
		return usageError{errors.New("bench: -dtype: empty list")}
	}
	if f.iters < 0 || f.warmup < -1 {
		return usageError{errors.New("bench: -iters must be >= 0 and -warmup >= -1")}
	}
	if err := checkTierNames("tiers", f.tiers, naiveTier); err != nil {
		return err
	}
	var script string
	if f.python != "" {
		if script, err = findTorchScript(f.script); err != nil {
			return err
		}
	}

	e, err := f.dev.open(printMessages(stderr, vk.SeverityWarning))
	if err != nil {
		return err
	}
	defer e.Close()
	p := e.Profile()
	def := gpuBench
	if p.Type == vk.DeviceCPU {
		def = cpuBench
	}
	pick := func(name, given, fallback string) string {
		if set[name] {
			return given
		}
		return fallback
	}
	ds, err := parseInts("d", pick("d", f.d, def.d))
	if err != nil {
		return err
	}
	ls, err := parseInts("l", pick("l", f.l, def.l))
	if err != nil {
		return err
	}
	tok, err := parseInts("tokens", pick("tokens", f.tokens, fmt.Sprint(def.tokens)))
	if err != nil {
		return err
	}
	hid, err := parseInts("hidden", pick("hidden", f.hidden, fmt.Sprint(def.hidden)))
	if err != nil {
		return err
	}
	if len(tok) != 1 || len(hid) != 1 {
		return usageError{errors.New("bench: -tokens and -hidden take one value each")}
	}
	tiers, naive, err := benchTiers(f.tiers, e.ForwardTiers())
	if err != nil {
		return err
	}

	var shapes []benchShape
	for _, dt := range dts {
		for _, d := range ds {
			if hid[0]%d != 0 {
				return usageError{fmt.Errorf("bench: -hidden %d is not a multiple of head dim %d", hid[0], d)}
			}
			for _, c := range causals {
				for _, l := range ls {
					shapes = append(shapes, benchShape{DType: dt.String(), B: max(1, tok[0]/l), H: hid[0] / d, L: l, D: d, Causal: c})
				}
			}
		}
	}
	var kinds []string
	for _, t := range tiers {
		kinds = append(kinds, t.String())
	}
	if naive {
		kinds = append(kinds, naiveTier)
	}
	if len(kinds) == 0 {
		return errors.New("bench: no tiers to time")
	}

	rep := benchReport{Device: p.Name, Driver: p.DriverName + " " + p.DriverInfo, Vulkan: vk.Version(p.APIVersion),
		Date: time.Now().UTC(), Convention: flopConvention}
	fmt.Fprintf(stderr, "bench: %s: %d shapes x %s\n", p.Summary(), len(shapes), strings.Join(kinds, ", "))

	// PyTorch first: it fails fast where it cannot run at all.
	var torchRows map[int]torchResult
	if f.python != "" {
		torchRows, rep.Torch, err = runTorch(ctx, f.python, script, shapes, f.warmup, f.iters, stderr)
		if err != nil {
			return err
		}
	}

	total, done := len(shapes)*len(kinds), 0
	inputs := map[string][]float32{} // random normal values per dtype, rounded, shared by all shapes
	failed := 0
	var stopped error
	for si, s := range shapes {
		if stopped = ctx.Err(); stopped != nil {
			break // report what was measured
		}
		rows := benchShapeRows(ctx, e, s, tiers, naive, inputs, f, func(tier string) {
			done++
			fmt.Fprintf(stderr, "[%d/%d] %s %s ...", done, total, s, tier)
		}, stderr)
		for i := range rows {
			r := &rows[i]
			if tr, ok := torchRows[si]; ok {
				r.Torch, r.TorchErrors = tr.TFLOPS, tr.Errors
				r.VsFlash, r.VsCudnn = ratio(r.TFLOPS, tr.TFLOPS["flash"]), ratio(r.TFLOPS, tr.TFLOPS["cudnn"])
			}
			if r.Error != "" && r.Tier != naiveTier {
				failed++
			}
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if err := e.Instance().CheckValidation(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		failed++
	}
	writeBenchTable(stdout, &rep, f.python != "")
	f.dev.printStats(stdout, e)
	if f.jsonFile != "" {
		if err := writeJSONFile(f.jsonFile, &rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", f.jsonFile)
	}
	if stopped != nil {
		return fmt.Errorf("bench stopped after %d of %d shapes: %w", len(rep.Rows)/len(kinds), len(shapes), stopped)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d row(s) failed\n", failed)
		return errFailed
	}
	return nil
}

func parseCausal(s string) ([]bool, error) {
	switch s {
	case "both":
		return []bool{false, true}, nil
	case "true":
		return []bool{true}, nil
	case "false":
		return []bool{false}, nil
	}
	return nil, usageError{fmt.Errorf("bench: -causal %q: want both, true or false", s)}
}

// benchTiers parses -tiers: the kernel tiers and whether the naive baseline is in.
func benchTiers(s string, available []devices.Tier) ([]devices.Tier, bool, error) {
	var tiers []devices.Tier
	naive := false
	for _, f := range splitList(s) {
		switch f {
		case "all":
			for _, t := range available {
				if !slices.Contains(tiers, t) {
					tiers = append(tiers, t)
				}
			}
			naive = true
		case naiveTier:
			naive = true
		default:
			ts, err := parseTiers(f, available)
			if err != nil {
				return nil, false, err
			}
			if !slices.Contains(tiers, ts[0]) {
				tiers = append(tiers, ts[0])
			}
		}
	}
	return tiers, naive, nil
}

// benchShapeRows times one shape at every tier (and the naive baseline); failures are rows with
// an error.
func benchShapeRows(ctx context.Context, e *attention.Engine, s benchShape, tiers []devices.Tier, naive bool,
	inputs map[string][]float32, f benchFlags, started func(tier string), stderr io.Writer) []benchRow {
	var rows []benchRow
	fail := func(tier string, err error) {
		rows = append(rows, benchRow{benchShape: s, timing: timing{Tier: tier}, Error: err.Error()})
	}
	kinds := make([]string, 0, len(tiers)+1)
	for _, t := range tiers {
		kinds = append(kinds, t.String())
	}
	if naive {
		kinds = append(kinds, naiveTier)
	}
	dt, _ := memory.ParseDType(s.DType)
	n := s.B * s.L * s.H * s.D
	data := inputs[s.DType]
	if len(data) < n+2 {
		r := conformance.NewRand(uint64(n)<<2 | uint64(dt))
		data = conformance.Randn(r, dt, n+2)
		inputs[s.DType] = data
	}
	var ts tensors
	defer ts.close()
	var q, k, v, o, lse *memory.Tensor
	var err error
	// q, k and v are offset views of one random stream: different, never zero.
	if q, err = ts.upload(ctx, e, dt, data[:n], s.B, s.L, s.H, s.D); err == nil {
		if k, err = ts.upload(ctx, e, dt, data[1:n+1], s.B, s.L, s.H, s.D); err == nil {
			if v, err = ts.upload(ctx, e, dt, data[2:n+2], s.B, s.L, s.H, s.D); err == nil {
				if o, err = ts.alloc(e, dt, s.B, s.L, s.H, s.D); err == nil {
					lse, err = ts.alloc(e, memory.F32, s.B, s.L, s.H)
				}
			}
		}
	}
	if err != nil {
		for _, kind := range kinds {
			started(kind)
			fmt.Fprintf(stderr, " error: %v\n", err)
			fail(kind, fmt.Errorf("tensors: %w", err))
		}
		return rows
	}
	for _, kind := range kinds {
		started(kind)
		opts := attention.Options{Causal: s.Causal, LSE: true}
		timeFn := e.TimeForward
		if kind == naiveTier {
			timeFn = func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options, warmup, iters int) ([]time.Duration, string, error) {
				return timeNaive(ctx, e, o, lse, q, k, v, opts, warmup, iters)
			}
		} else if opts.Tier, err = devices.ParseTier(kind); err != nil {
			fail(kind, err)
			continue
		}
		row := benchRow{benchShape: s, timing: timing{Tier: kind}}
		row.Kernel, row.Warmup, row.Iters, row.MedianMS, row.MinMS, err = timeRow(ctx, timeFn, o, lse, q, k, v, opts, f.warmup, f.iters)
		if err != nil {
			fmt.Fprintf(stderr, " error: %v\n", err)
			row.Error = err.Error()
			rows = append(rows, row)
			continue
		}
		row.TFLOPS = s.flops() / (row.MedianMS / 1e3) / 1e12
		fmt.Fprintf(stderr, " %s %.3f ms, %s\n", row.Kernel, row.MedianMS, rateString(row.TFLOPS))
		rows = append(rows, row)
	}
	return rows
}

type timeFunc func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options, warmup, iters int) ([]time.Duration, string, error)

// timeRow times one kernel: with iters 0, a single probe run sizes the count (and is the sample
// itself if one run is too slow to repeat).
func timeRow(ctx context.Context, timeIt timeFunc, o, lse, q, k, v *memory.Tensor, opts attention.Options, warmup, iters int) (kernel string, w, n int, med, lo float64, err error) {
	if iters == 0 {
		probe, kernel, err := timeIt(ctx, o, lse, q, k, v, opts, 0, 1)
		if err != nil {
			return kernel, 0, 0, 0, 0, err
		}
		iters = autoIters(probe[0], benchTarget, benchBudget, 3, 100)
		if warmup < 0 {
			warmup = 0 // a slow probe warmed it up
			if probe[0] <= benchTarget/10 {
				warmup = max(1, min(benchMaxWarm, int(benchWarm/max(probe[0], time.Microsecond))))
			}
		}
		if iters <= 1 {
			return kernel, 0, 1, ms(probe[0]), ms(probe[0]), nil
		}
	}
	if warmup < 0 {
		warmup = 1
	}
	times, kernel, err := timeIt(ctx, o, lse, q, k, v, opts, warmup, iters)
	if err != nil {
		return kernel, 0, 0, 0, 0, err
	}
	return kernel, warmup, len(times), ms(median(times)), ms(minDuration(times)), nil
}

func ratio(a float64, b *float64) *float64 {
	if b == nil || *b <= 0 || a <= 0 {
		return nil
	}
	r := a / *b
	return &r
}

func writeBenchTable(w io.Writer, rep *benchReport, torch bool) {
	fmt.Fprintf(w, "%s, %s, Vulkan %s; %s\n", rep.Device, rep.Driver, rep.Vulkan, flopConvention)
	if torch && rep.Torch != nil {
		fmt.Fprintf(w, "PyTorch %v on %v: SDPA backends flash, cudnn, efficient, math in the same unit and convention; vs = vkattn / backend\n", rep.Torch["torch"], rep.Torch["device"])
	}
	// A CPU device is better read in GFLOP/s.
	unit, scale := "TFLOP/s", 1.0
	top := 0.0
	for _, r := range rep.Rows {
		top = max(top, r.TFLOPS)
		for _, t := range r.Torch {
			if t != nil {
				top = max(top, *t)
			}
		}
	}
	if top > 0 && top < 0.1 {
		unit, scale = "GFLOP/s", 1e3
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "dtype\td\tcausal\tL\tB\tH\ttier\tkernel\tms\t" + unit + "\t"
	if torch {
		head += "flash\tcudnn\tefficient\tmath\tvs flash\tvs cudnn\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rep.Rows {
		c := "-"
		if r.Causal {
			c = "yes"
		}
		line := fmt.Sprintf("%s\t%d\t%s\t%d\t%d\t%d\t%s\t", r.DType, r.D, c, r.L, r.B, r.H, r.Tier)
		if r.Error != "" {
			line += "error: " + firstLine(r.Error) + "\t\t\t"
		} else {
			line += fmt.Sprintf("%s\t%.3f\t%.3f\t", r.Kernel, r.MedianMS, r.TFLOPS*scale)
		}
		if torch {
			for _, b := range torchBackends {
				var x *float64
				if t := r.Torch[b]; t != nil {
					x = new(*t * scale)
				}
				line += optFloat(x, "%.1f") + "\t"
			}
			line += optFloat(r.VsFlash, "%.3f") + "\t" + optFloat(r.VsCudnn, "%.3f") + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func optFloat(x *float64, format string) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf(format, *x)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func timeNaive(ctx context.Context, e *attention.Engine, o, lse, q, k, v *memory.Tensor, opts attention.Options, warmup, iters int) ([]time.Duration, string, error) {
	return e.TimeNaive(ctx, o, lse, q, k, v, opts, warmup, iters)
}
