package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/vk"
)

// decodeConvention says how decode-bench counts bandwidth and throughput.
const decodeConvention = "GB/s = bytes of K and V read (2*B*Lk*Hk*(d*element size), or codes and bf16 scales for int8 and int4) / median time; tokens/s = B*Lq / median time"

// Decode bench key lengths: the target lengths on a GPU, a quick sweep on a CPU device.
const (
	gpuDecodeLk = "4096,32768,131072"
	cpuDecodeLk = "512,2048"
)

// decodeRow is one timed (key length, tier).
type decodeRow struct {
	DType  string `json:"dtype"`
	KV     string `json:"kv"` // how K and V are stored: DType, int8 or int4
	B      int    `json:"b"`
	Hq     int    `json:"hq"`
	Hk     int    `json:"hk"`
	Lq     int    `json:"lq"`
	Lk     int    `json:"lk"`
	D      int    `json:"d"`
	Causal bool   `json:"causal"`
	Splits int    `json:"splits"` // as asked; 0 is automatic
	// HeadsMajor: float K and V lie [Hk, B, Lk, D] in memory (-heads-major), else [B, Lk, Hk, D].
	HeadsMajor bool `json:"heads_major,omitempty"`
	timing
	GBps     float64 `json:"gbps,omitempty"`
	TokensPS float64 `json:"tokens_per_s,omitempty"`
	Error    string  `json:"error,omitempty"`
	// VsFloat is TokensPS over that of the fastest row of the same shape with K and V stored as
	// DType, at any tier (where -kv lists it): the speedup of quantized K and V over the best
	// float decode.
	VsFloat *float64 `json:"vs_float,omitempty"`
	// PyTorch SDPA on the same shape (with -torch): GB/s per backend, null where it failed.
	Torch       map[string]*float64 `json:"torch_gbps,omitempty"`
	TorchErrors map[string]string   `json:"torch_errors,omitempty"`
	VsBest      *float64            `json:"vs_best,omitempty"` // GBps / the fastest backend's
}

// kvBytes is the K and V the row's decode reads: per (token, head), d elements, or the packed
// codes and the bf16 scales of quantized K and V.
func (r decodeRow) kvBytes() float64 {
	perRow := float64(r.D)
	if f, ok := kvFormats[r.KV]; ok {
		perRow = float64(r.D*f.Bits()/8 + 2*f.Groups(r.D))
	} else {
		dt, _ := memory.ParseDType(r.DType)
		perRow *= float64(dt.Size())
	}
	return 2 * float64(r.B) * float64(r.Lk) * float64(r.Hk) * perRow
}

// kvFormats are the quantized K/V storage -kv takes.
var kvFormats = map[string]quant.Format{"int8": quant.Int8, "int4": quant.Int4}

// decodeReport is what decode-bench -json writes.
type decodeReport struct {
	Device     string         `json:"device"`
	Driver     string         `json:"driver"`
	Vulkan     string         `json:"vulkan"`
	Date       time.Time      `json:"date"`
	Convention string         `json:"gbps"`
	Torch      map[string]any `json:"torch,omitempty"`
	Rows       []decodeRow    `json:"rows"`
}

func cmdDecodeBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("decode-bench", "Times Decode (split-KV) for B sequences of Lq new tokens each against Lk keys, Hq query\n"+
		"and Hk key/value heads of dim d, at every tier the device runs Decode at, and reports the bandwidth\n"+
		"of reading K and V. On a GPU the key lengths default to 4k, 32k and 128k; on a CPU device to a\n"+
		"small sweep. Progress goes to stderr, the table to stdout.", stderr)
	b := fs.Int("b", 8, "sequences")
	hq := fs.Int("hq", 32, "query heads")
	hk := fs.Int("hk", 8, "key/value heads (a divisor of -hq)")
	d := fs.Int("d", 128, "head dim")
	lq := fs.Int("lq", 1, fmt.Sprintf("new query tokens per sequence (1 to %d)", attention.MaxDecodeQueries))
	lkFlag := fs.String("lk", gpuDecodeLk, "key lengths (list; CPU device default "+cpuDecodeLk+")")
	dtFlag := fs.String("dtype", "f16", "storage type of q, k, v and o (f32, f16 or bf16)")
	kvFlag := fs.String("kv", "", "storage of K and V (list of the -dtype, int8, int4: quantized K and V, dequantized in the kernel; default the -dtype)")
	causal := fs.Bool("causal", false, "causal mask among the new tokens (bottom-right aligned)")
	splitsFlag := fs.String("splits", "0", "key chunks per sequence (list; 0 = automatic): each row is run with each")
	headsMajor := fs.Bool("heads-major", false, "store float K and V heads-major, [Hk, B, Lk, D] in memory, so that each (head, sequence)'s keys are contiguous as in PyTorch's [B, Hk, Lk, D] (an order the kernels do not take), and decode through a [B, Lk, Hk, D] view (default tokens-major, as a KV cache stores them)")
	tiersFlag := fs.String("tiers", "all", "tiers (list of scalar, subgroup, coopmat, auto; all = every tier the device runs Decode at; quantized K/V rows run at those of them that have their kernels)")
	iters := fs.Int("iters", 0, fmt.Sprintf("timed runs per row (0 = about %v of runs, at least 3 unless a run is slow)", benchTarget))
	warmup := fs.Int("warmup", -1, "untimed runs before the timed ones (-1 = automatic: about 1 s of runs, at most 5000; none for a slow run)")
	jsonFile := fs.String("json", "", "write every row (and the device) as JSON to this file")
	python := fs.String("torch", "", "python interpreter with PyTorch and CUDA: also time PyTorch SDPA on the same shapes")
	scriptFlag := fs.String("torch-script", "", "path of tools/torch/sdpa_bench.py (default: found from the working directory or the executable)")
	var dev deviceFlags
	dev.register(fs, false, "enable the Khronos validation layer (slow; any validation error fails the bench)")
	if err := parse(fs, args); err != nil {
		return err
	}
	dt, err := memory.ParseDType(*dtFlag)
	if err != nil {
		return usageError{fmt.Errorf("decode-bench: -dtype: %w", err)}
	}
	switch {
	case *b < 1 || *hq < 1 || *hk < 1 || *d < 1:
		return usageError{errors.New("decode-bench: -b, -hq, -hk and -d must be positive")}
	case *hq%*hk != 0:
		return usageError{fmt.Errorf("decode-bench: -hq %d is not a multiple of -hk %d", *hq, *hk)}
	case *lq < 1 || *lq > attention.MaxDecodeQueries:
		return usageError{fmt.Errorf("decode-bench: -lq must be 1 to %d", attention.MaxDecodeQueries)}
	case *iters < 0 || *warmup < -1:
		return usageError{errors.New("decode-bench: -iters must be >= 0 and -warmup >= -1")}
	}
	splits, err := parseIntsFrom("splits", *splitsFlag, 0) // 0: automatic
	if err != nil {
		return err
	}
	if err := checkTierNames("tiers", *tiersFlag); err != nil {
		return err
	}
	kvs, err := parseKV(*kvFlag, dt)
	if err != nil {
		return err
	}
	if *headsMajor && slices.ContainsFunc(kvs, func(kv string) bool { _, q := kvFormats[kv]; return q }) {
		return usageError{errors.New("decode-bench: -heads-major stores float K and V only; quantized K and V keep the cache's tokens-major layout")}
	}
	var script string
	if *python != "" {
		if script, err = findTorchScript(*scriptFlag); err != nil {
			return err
		}
	}
	e, err := dev.open(printMessages(stderr, vk.SeverityWarning))
	if err != nil {
		return err
	}
	defer e.Close()
	defer dev.printStats(stderr, e)
	p := e.Profile()
	lkList := *lkFlag
	if p.Type == vk.DeviceCPU && !flagSet(fs)["lk"] {
		lkList = cpuDecodeLk
	}
	lks, err := parseInts("lk", lkList)
	if err != nil {
		return err
	}
	tiers, err := parseTiers(*tiersFlag, e.DecodeTiers())
	if err != nil {
		return err
	}
	rep := decodeReport{Device: p.Name, Driver: p.DriverName + " " + p.DriverInfo, Vulkan: vk.Version(p.APIVersion),
		Date: time.Now().UTC(), Convention: decodeConvention}
	layout := "tokens-major"
	if *headsMajor {
		layout = "heads-major"
	}
	fmt.Fprintf(stderr, "decode-bench: %s: B=%d Hq=%d Hk=%d d=%d Lq=%d %s, K/V %v %s, Lk %v x %s\n", p.Summary(), *b, *hq, *hk, *d, *lq, dt, kvs, layout, lks, tierNames(tiers))

	var torchRows map[int]torchResult
	if *python != "" {
		var shapes []torchShape
		for i, lk := range lks {
			shapes = append(shapes, torchShape{ID: i, B: *b, H: *hq, Hk: *hk, Lq: *lq, Lk: lk, D: *d, Causal: *causal, DType: dt.String()})
		}
		if torchRows, rep.Torch, err = runTorchShapes(ctx, *python, script, shapes, *warmup, *iters, stderr); err != nil {
			return err
		}
	}
	failed := 0
	var stopped error
	for i, lk := range lks {
		if stopped = ctx.Err(); stopped != nil {
			break
		}
		var rows []decodeRow
		for _, kv := range kvs {
			ts := tiers
			if _, quantized := kvFormats[kv]; quantized {
				ts = quantizedTiers(tiers, e.QuantizedDecodeTiers())
			}
			for _, n := range splits {
				row := decodeRow{DType: dt.String(), KV: kv, B: *b, Hq: *hq, Hk: *hk, Lq: *lq, Lk: lk, D: *d, Causal: *causal, Splits: n,
					HeadsMajor: *headsMajor}
				rows = append(rows, decodeRows(ctx, e, row, ts, *warmup, *iters, stderr)...)
			}
		}
		var floatTPS *float64 // tokens/s of the fastest float K/V row
		for _, r := range rows {
			if r.KV == r.DType && r.Error == "" && (floatTPS == nil || r.TokensPS > *floatTPS) {
				floatTPS = &r.TokensPS
			}
		}
		for j := range rows {
			r := &rows[j]
			if floatTPS != nil && r.KV != r.DType {
				r.VsFloat = ratio(r.TokensPS, floatTPS)
			}
			if tr, ok := torchRows[i]; ok && r.KV == r.DType {
				r.Torch, r.TorchErrors = tr.GBps, tr.Errors
				var best *float64
				for _, x := range tr.GBps {
					if x != nil && (best == nil || *x > *best) {
						best = x
					}
				}
				r.VsBest = ratio(r.GBps, best)
			}
			if r.Error != "" {
				failed++
			}
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if err := e.Instance().CheckValidation(); err != nil {
		fmt.Fprintln(stderr, "decode-bench:", err)
		failed++
	}
	writeDecodeTable(stdout, &rep, *python != "")
	if *jsonFile != "" {
		if err := writeJSONFile(*jsonFile, &rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "decode-bench: wrote %s\n", *jsonFile)
	}
	if stopped != nil {
		return fmt.Errorf("decode-bench stopped: %w", stopped)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d row(s) failed\n", failed)
		return errFailed
	}
	return nil
}

// parseKV parses -kv: a list of the float type dt and quantized formats; empty means dt alone.
func parseKV(s string, dt memory.DType) ([]string, error) {
	if s == "" {
		return []string{dt.String()}, nil
	}
	var out []string
	for _, f := range splitList(s) {
		if _, ok := kvFormats[f]; ok {
			out = append(out, f)
			continue
		}
		if t, err := memory.ParseDType(f); err != nil || t != dt {
			return nil, usageError{fmt.Errorf("decode-bench: -kv: %q is neither int8, int4 nor the -dtype %s", f, dt)}
		}
		out = append(out, dt.String())
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("decode-bench: -kv: empty list")}
	}
	return out, nil
}

// quantizedKV uploads n tokens of Gaussian keys or values, [B, Lk, Hk, d], quantized as f: a
// block of tokens quantized once and repeated, as quantizing billions of values would take
// longer than the timing.
func quantizedKV(ctx context.Context, e *attention.Engine, f quant.Format, seed uint64, b, lk, hk, d int) (*attention.Quantized, error) {
	tokens := b * lk
	blk := min(tokens, max(1, (1<<20)/(hk*d)))
	x, err := quant.Quantize(f, conformance.Randn(conformance.NewRand(seed), memory.F32, blk*hk*d), blk, hk, d)
	if err != nil {
		return nil, err
	}
	full := &quant.Tensor{Format: f, Tokens: tokens, Heads: hk, Dim: d,
		Words: make([]uint32, tokens*hk*d/f.PerWord()), Scales: make([]uint16, tokens*hk*f.Groups(d))}
	for i := 0; i < len(full.Words); i += len(x.Words) {
		copy(full.Words[i:], x.Words)
	}
	for i := 0; i < len(full.Scales); i += len(x.Scales) {
		copy(full.Scales[i:], x.Scales)
	}
	return e.UploadQuantized(ctx, full, b, lk, hk, d)
}

// quantizedTiers is the tiers of the list at which quantized K and V decode on the device
// (quantized, attention's QuantizedDecodeTiers; auto always), the float rows running at all of
// them.
func quantizedTiers(tiers, quantized []devices.Tier) []devices.Tier {
	var out []devices.Tier
	for _, t := range tiers {
		if t == devices.TierAuto || slices.Contains(quantized, t) {
			out = append(out, t)
		}
	}
	return out
}

// floatKV uploads data as K or V of shape [B, Lk, Hk, D]: stored so, or with shape.HeadsMajor
// stored [Hk, B, Lk, D] (the values need no reordering: they are random) and returned as a view
// in the decode's order.
func floatKV(ctx context.Context, e *attention.Engine, ts *tensors, dt memory.DType, data []float32, shape decodeRow) (*memory.Tensor, error) {
	if !shape.HeadsMajor {
		return ts.upload(ctx, e, dt, data, shape.B, shape.Lk, shape.Hk, shape.D)
	}
	t, err := ts.upload(ctx, e, dt, data, shape.Hk, shape.B, shape.Lk, shape.D)
	if err != nil {
		return nil, err
	}
	return conformance.HeadsMajorView(t)
}

// decodeRows times one shape (shape's fields) at every tier; failures are rows with an error.
func decodeRows(ctx context.Context, e *attention.Engine, shape decodeRow, tiers []devices.Tier, warmup, iters int, stderr io.Writer) []decodeRow {
	var rows []decodeRow
	dt, _ := memory.ParseDType(shape.DType)
	nq, nk := shape.B*shape.Lq*shape.Hq*shape.D, shape.B*shape.Lk*shape.Hk*shape.D
	// Random normal values: a block repeated, as generating billions of them would take longer
	// than the timing; q, k and v are different offsets into it.
	block := conformance.Randn(conformance.NewRand(uint64(nk)<<2|uint64(dt)), dt, 1<<20+2)
	fill := func(n, off int) []float32 {
		out := make([]float32, n)
		for i := 0; i < n; i += len(block) - 2 {
			copy(out[i:], block[off:len(block)-2+off])
		}
		return out
	}
	var ts tensors
	defer ts.close()
	q, err := ts.upload(ctx, e, dt, fill(nq, 0), shape.B, shape.Lq, shape.Hq, shape.D)
	var k, v, o *memory.Tensor
	var kq, vq *attention.Quantized
	defer func() { kq.Close(); vq.Close() }()
	format, quantized := kvFormats[shape.KV]
	switch {
	case err != nil:
	case quantized:
		if kq, err = quantizedKV(ctx, e, format, uint64(nk)<<2|1, shape.B, shape.Lk, shape.Hk, shape.D); err == nil {
			if vq, err = quantizedKV(ctx, e, format, uint64(nk)<<2|2, shape.B, shape.Lk, shape.Hk, shape.D); err == nil {
				o, err = ts.alloc(e, dt, shape.B, shape.Lq, shape.Hq, shape.D)
			}
		}
	default:
		if k, err = floatKV(ctx, e, &ts, dt, fill(nk, 1), shape); err == nil {
			if v, err = floatKV(ctx, e, &ts, dt, fill(nk, 2), shape); err == nil {
				o, err = ts.alloc(e, dt, shape.B, shape.Lq, shape.Hq, shape.D)
			}
		}
	}
	for _, tier := range tiers {
		r := shape
		r.Tier = tier.String()
		fmt.Fprintf(stderr, "%s K/V %s Lk=%d %s ...", shape.DType, shape.KV, shape.Lk, r.Tier)
		if err != nil {
			r.Error = fmt.Sprintf("tensors: %v", err)
			fmt.Fprintf(stderr, " error: %s\n", r.Error)
			rows = append(rows, r)
			continue
		}
		timeIt := func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options, warmup, iters int) ([]time.Duration, string, error) {
			do := attention.DecodeOptions{Options: opts, Splits: shape.Splits}
			if quantized {
				return e.TimeDecodeQuantized(ctx, o, lse, q, kq, vq, attention.QuantizedDecodeOptions{DecodeOptions: do}, warmup, iters)
			}
			return e.TimeDecode(ctx, o, lse, q, k, v, do, warmup, iters)
		}
		var terr error
		r.Kernel, r.Warmup, r.Iters, r.MedianMS, r.MinMS, terr = timeRow(ctx, timeIt, o, nil, q, k, v,
			attention.Options{Causal: shape.Causal, Tier: tier}, warmup, iters)
		if terr != nil {
			r.Error = terr.Error()
			fmt.Fprintf(stderr, " error: %v\n", terr)
		} else {
			r.GBps = r.kvBytes() / (r.MedianMS / 1e3) / 1e9
			r.TokensPS = float64(r.B*r.Lq) / (r.MedianMS / 1e3)
			fmt.Fprintf(stderr, " %s %.3f ms, %.4g GB/s, %.4g tokens/s\n", r.Kernel, r.MedianMS, r.GBps, r.TokensPS)
		}
		rows = append(rows, r)
	}
	return rows
}

func writeDecodeTable(w io.Writer, rep *decodeReport, torch bool) {
	fmt.Fprintf(w, "%s, %s, Vulkan %s; %s\n", rep.Device, rep.Driver, rep.Vulkan, decodeConvention)
	if torch && rep.Torch != nil {
		fmt.Fprintf(w, "PyTorch %v on %v: SDPA backends flash, cudnn, efficient, math in GB/s; vs = vkattn / the fastest backend\n", rep.Torch["torch"], rep.Torch["device"])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "dtype\tkv\td\tB\tHq\tHk\tLq\tLk\tsplits\ttier\tkernel\tms\tGB/s\ttokens/s\tvs float\t"
	if torch {
		head += strings.Join(torchBackends, "\t") + "\tvs best\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rep.Rows {
		splits := "auto"
		if r.Splits > 0 {
			splits = strconv.Itoa(r.Splits)
		}
		line := fmt.Sprintf("%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t", r.DType, r.KV, r.D, r.B, r.Hq, r.Hk, r.Lq, r.Lk, splits, r.Tier)
		if r.Error != "" {
			line += "error: " + firstLine(r.Error) + "\t\t\t\t\t"
		} else {
			line += fmt.Sprintf("%s\t%.3f\t%.4g\t%.4g\t%s\t", r.Kernel, r.MedianMS, r.GBps, r.TokensPS, optFloat(r.VsFloat, "%.2f"))
		}
		if torch {
			for _, b := range torchBackends {
				line += optFloat(r.Torch[b], "%.4g") + "\t"
			}
			line += optFloat(r.VsBest, "%.3f") + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
