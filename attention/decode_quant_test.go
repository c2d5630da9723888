package attention_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

// quantCase is a quantized decode problem: a decode case (Case.DType is q's and o's type, o's
// alone with FP8 queries) over K and V quantized as kv.
type quantCase struct {
	conformance.Case
	kv        quant.Format
	fp8       bool // FP8 E4M3 queries
	scaled    bool // RoPE-aware key scaling: keys with outlier channels scaled, queries inversely
	nonFinite bool // a few K and V inputs NaN or Inf: their groups dequantize to NaN
	spread    bool // V rows of magnitudes 2^-20 to 2^20 (f16 outputs: 2^-10 to 2^5), so V scales differ that much between keys
}

func (c quantCase) String() string {
	s := c.kv.String() + "/" + c.Case.String()
	if c.fp8 {
		s += "/fp8q"
	}
	if c.scaled {
		s += "/scaled"
	}
	if c.nonFinite {
		s += "/nonfinite"
	}
	if c.spread {
		s += "/spread"
	}
	return s
}

// quantInputs are a quantCase's inputs on the host: q (float32, unscaled), the quantized K and V
// and, with scaling, the key scales.
type quantInputs struct {
	p      reference.Params
	opts   attention.Options
	q      []float32
	kf, vf []float32 // K and V unquantized (and unscaled)
	k, v   *quant.Tensor
	keys   *quant.KeyScales
	qShape []int
	kShape []int
}

// draw makes c's inputs from r: Gaussian q, k and v (q rounded to c.DType unless FP8), k with
// outlier channels where scaled, calibrated on its own draw.
func (c quantCase) draw(t *testing.T, r *rand.Rand) *quantInputs {
	t.Helper()
	in := &quantInputs{}
	in.p, in.opts = c.Params()
	in.qShape, in.kShape = c.Shapes()
	nq, nk := in.p.TotalQ()*c.Hq*c.D, in.p.TotalK()*c.Hk*c.D
	qdt := c.DType
	if c.fp8 {
		qdt = memory.F32
	}
	in.q = conformance.Randn(r, qdt, nq)
	k, v := conformance.Randn(r, memory.F32, nk), conformance.Randn(r, memory.F32, nk)
	if c.scaled {
		spread := outlierSpread(r, c.Hk, c.D)
		k = outlierKeys(r, spread, in.p.TotalK(), c.Hk, c.D)
		in.kf = k
		calib := outlierKeys(r, spread, 256, c.Hk, c.D)
		var err error
		in.keys, err = quant.CalibrateKeys(calib, 256, c.Hk, c.D, quant.Calibration{})
		require.NoError(t, err)
		// Keys beyond the calibration draw's maxima are fine: each group's scale is its own absmax's.
		k, err = in.keys.ScaleKeys(k)
		require.NoError(t, err)
	}
	if c.spread {
		lo, n := -20, 41 // 2^-20 to 2^20
		if c.DType == memory.F16 {
			lo, n = -10, 16 // 2^-10 to 2^5: outputs within fp16's range
		}
		for row := 0; row < nk/c.D; row++ {
			m := float32(math.Ldexp(1, r.IntN(n)+lo))
			for i := row * c.D; i < (row+1)*c.D; i++ {
				v[i] *= m
			}
		}
	}
	if c.nonFinite && nk > 3*c.D {
		k[nk/3] = float32(math.NaN())
		v[2*nk/3] = float32(math.Inf(1))
		k[nk-1] = float32(math.Inf(-1))
		v[nk-1] = float32(math.Inf(1)) // the last key's K and V: NaN rows and a NaN V scale in one (tail) tile
	}
	if in.kf == nil {
		in.kf = k
	}
	in.vf = v
	var err error
	in.k, err = quant.Quantize(c.kv, k, in.p.TotalK(), c.Hk, c.D)
	require.NoError(t, err)
	in.v, err = quant.Quantize(c.kv, v, in.p.TotalK(), c.Hk, c.D)
	require.NoError(t, err)
	return in
}

// outlierSpread is the spread of each rotate-half RoPE channel pair of the keys of each KV head,
// [hk][d/2]: log-normal, with three pairs per head twelve times wider, as an LLM's keys have.
func outlierSpread(r *rand.Rand, hk, d int) []float64 {
	spread := make([]float64, hk*d/2)
	for i := range spread {
		spread[i] = math.Exp(0.5 * r.NormFloat64())
	}
	for h := 0; h < hk; h++ {
		for _, j := range r.Perm(d / 2)[:3] {
			spread[h*d/2+j] *= 12
		}
	}
	return spread
}

// outlierKeys are Gaussian keys [tokens][hk][d] with the pair spreads given, rotated by RoPE
// (rotate-half) at positions 0, 1, ...: the keys FireQ's RoPE-aware scaling is for.
func outlierKeys(r *rand.Rand, spread []float64, tokens, hk, d int) []float32 {
	k := make([]float32, tokens*hk*d)
	for t := 0; t < tokens; t++ {
		for h := 0; h < hk; h++ {
			row := k[(t*hk+h)*d:][:d]
			for j := 0; j < d/2; j++ {
				s := spread[h*d/2+j]
				a, b := s*r.NormFloat64(), s*r.NormFloat64()
				th := float64(t) * math.Pow(10000, -2*float64(j)/float64(d))
				row[j], row[j+d/2] = float32(a*math.Cos(th)-b*math.Sin(th)), float32(a*math.Sin(th)+b*math.Cos(th))
			}
		}
	}
	return k
}

// want is the float64 reference over the dequantized inputs, as the kernel sees them.
func (in *quantInputs) want(t *testing.T, c quantCase) (o, lse []float64) {
	t.Helper()
	o, lse, err := quant.Attention(in.p, in.q, in.k, in.v, quant.AttentionOptions{Scales: in.keys, FP8Queries: c.fp8})
	require.NoError(t, err)
	return o, lse
}

// deviceInputs are a quantCase's inputs on the device, closed at the test's end.
type deviceInputs struct {
	q      *memory.Tensor
	k, v   *attention.Quantized
	opts   attention.QuantizedDecodeOptions
	o, lse *memory.Tensor
}

// upload puts in on the device as c runs it, with poisoned outputs.
func (in *quantInputs) upload(t *testing.T, e *attention.Engine, c quantCase) *deviceInputs {
	t.Helper()
	ctx := context.Background()
	d := &deviceInputs{opts: attention.QuantizedDecodeOptions{DecodeOptions: attention.DecodeOptions{Options: in.opts, Splits: c.Splits}}}
	var err error
	d.k = uploadQuantized(t, e, in.k, in.kShape)
	d.v = uploadQuantized(t, e, in.v, in.kShape)
	switch {
	case c.fp8:
		q := in.q
		if in.keys != nil {
			q, err = in.keys.ScaleQueries(q, c.Hq)
			require.NoError(t, err)
		}
		qq, err := quant.Quantize(quant.E4M3, q, in.p.TotalQ(), c.Hq, c.D)
		require.NoError(t, err)
		d.opts.FP8Queries = uploadQuantized(t, e, qq, in.qShape)
	default:
		d.q, err = e.Upload(ctx, c.DType, in.q, in.qShape...)
		require.NoError(t, err)
		t.Cleanup(d.q.Close)
		if in.keys != nil {
			d.opts.QueryScales, err = e.Upload(ctx, memory.F32, in.keys.Q, c.Hk, c.D)
			require.NoError(t, err)
			t.Cleanup(d.opts.QueryScales.Close)
		}
	}
	d.o = newTensor(t, e, c.DType, in.qShape...)
	require.NoError(t, d.o.Fill(ctx, conformance.Poison))
	if in.opts.LSE {
		d.lse = newTensor(t, e, memory.F32, in.qShape[:len(in.qShape)-1]...)
		require.NoError(t, d.lse.Fill(ctx, conformance.Poison))
	}
	return d
}

func uploadQuantized(t *testing.T, e *attention.Engine, x *quant.Tensor, shape []int) *attention.Quantized {
	t.Helper()
	d, err := e.UploadQuantized(context.Background(), x, shape...)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return d
}

func (d *deviceInputs) run(t *testing.T, e *attention.Engine) string {
	t.Helper()
	kernel, err := e.DecodeQuantizedInto(context.Background(), d.o, d.lse, d.q, d.k, d.v, d.opts)
	require.NoError(t, err)
	return kernel
}

func download(t *testing.T, x *memory.Tensor) []float32 {
	t.Helper()
	if x == nil {
		return nil
	}
	got, err := x.Download(context.Background())
	require.NoError(t, err)
	return got
}

// requireUnwritten fails the test where an element of one of the tensors (filled with
// conformance.Poison) was written: a refused call dispatched something.
func requireUnwritten(t *testing.T, xs ...*memory.Tensor) {
	t.Helper()
	for _, x := range xs {
		for i, g := range download(t, x) {
			if math.Float32bits(g) != conformance.Poison {
				t.Fatalf("element %d of %v was written: %v: something was dispatched", i, x.Shape, g)
			}
		}
	}
}

// replay logs the seed of a failed test.
func replay(t *testing.T, s uint64) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (VKATTN_SEED=%d replays it)", s, s)
		}
	})
}

// replayedRand is a generator of stream stream from a fresh seed, which a failing test logs
// (seed, replay).
func replayedRand(t *testing.T, stream uint64) *rand.Rand {
	s := seed(t)
	replay(t, s)
	return rand.New(rand.NewPCG(s, stream))
}

// quantDType is the type of the queries and outputs the quantized tests use at a tier: fp32, or
// the first the tier takes (the coopmat tier's fp16).
func quantDType(tier devices.Tier) memory.DType { return attention.QuantizedDecodeInputs(tier)[0] }

// quantDecodeCases are the quantized decode matrix for K/V format kv at tier: GQA, MQA and
// plain heads, 1 to 16 new tokens, causal, varlen with empty sequences, several splits, each
// head dim, the query types, FP8 queries, RoPE-aware scaling, masks and non-finite groups. With
// imma (the coopmat tier, on a device with kv's tensor-core kernel), those of them that kernel
// takes (immaFits), every query type and mode.
func quantDecodeCases(kv quant.Format, tier devices.Tier, imma bool) []quantCase {
	var cs []quantCase
	add := func(c conformance.Case, f func(*quantCase)) {
		c.Tier, c.Decode = tier, true
		if !imma && !slices.Contains(attention.QuantizedDecodeInputs(tier), c.DType) {
			c.DType = quantDType(tier)
		}
		qc := quantCase{Case: c, kv: kv}
		if f != nil {
			f(&qc)
		}
		switch {
		case imma && !immaFits(kv, c):
			return // the coopmat tier's fp16 kernel: the run without imma
		case tier == devices.TierCoopMat && !imma && (qc.fp8 || qc.scaled):
			return // fp16 matrices: refused (TestDecodeQuantizedCoopMatRefusesWideQueries)
		}
		cs = append(cs, qc)
	}
	const f32, f16, bf16 = memory.F32, memory.F16, memory.BF16
	add(conformance.Case{DType: f32, D: 128, Hq: 8, Hk: 2, Lq: []int{1}, Lk: []int{300}, Batch: 2}, nil)
	add(conformance.Case{DType: f32, D: 128, Hq: 8, Hk: 1, Lq: []int{16}, Lk: []int{129}, Causal: true, Splits: 3}, nil)
	add(conformance.Case{DType: f16, D: 64, Hq: 4, Hk: 4, Lq: []int{5}, Lk: []int{77}, Batch: 3, Causal: true, Splits: 1}, nil)
	add(conformance.Case{DType: bf16, D: 256, Hq: 8, Hk: 2, Lq: []int{4}, Lk: []int{90}, Causal: true, Splits: 2}, nil)
	for _, d := range []int{32, 80, 96, 192} {
		add(conformance.Case{DType: f32, D: d, Hq: 4, Hk: 2, Lq: []int{3}, Lk: []int{45}, Causal: true, Splits: 2}, nil)
	}
	for _, sp := range []int{0, 4, 64} {
		add(conformance.Case{DType: f32, D: 128, Hq: 8, Hk: 2, Varlen: true, Causal: sp != 4, Splits: sp,
			Lq: []int{3, 0, 2, 16, 1}, Lk: []int{40, 9, 0, 300, 5}}, nil)
	}
	// Empty sequences, with at most 16 rows a (sequence, kv head), as the tensor-core kernels take
	// them.
	add(conformance.Case{DType: f32, D: 128, Hq: 8, Hk: 2, Varlen: true, Causal: true, Splits: 4,
		Lq: []int{1, 0, 1, 4}, Lk: []int{40, 9, 0, 300}}, nil)
	add(conformance.Case{DType: f32, D: 64, Hq: 4, Hk: 1, Lq: []int{4}, Lk: []int{200}, Window: &attention.Window{Left: 50, Right: 0}, Softcap: 4, Splits: 5}, nil)
	add(conformance.Case{DType: f32, D: 128, Hq: 4, Hk: 2, Lq: []int{2}, Lk: []int{64}, Scale: 0.3, NoLSE: true, Batch: 2, Splits: 2}, nil)
	// FP8 queries, RoPE-aware scaling, both, at f32 and f16 outputs, for 5 new tokens and one.
	for _, dt := range []memory.DType{f32, f16} {
		for _, lq := range []int{5, 1} {
			base := conformance.Case{DType: dt, D: 128, Hq: 8, Hk: 2, Lq: []int{lq}, Lk: []int{150}, Batch: 2, Causal: true, Splits: 3}
			add(base, func(c *quantCase) { c.fp8 = true })
			add(base, func(c *quantCase) { c.scaled = true })
			add(base, func(c *quantCase) { c.fp8, c.scaled = true, true })
		}
	}
	add(conformance.Case{DType: f32, D: 64, Hq: 8, Hk: 2, Varlen: true, Causal: true, Splits: 4,
		Lq: []int{2, 16, 1}, Lk: []int{70, 100, 33}}, func(c *quantCase) { c.fp8, c.scaled = true, true })
	// NaN and Inf inputs: their (token, head, group) dequantizes to NaN, which reaches exactly
	// the rows that see that key.
	add(conformance.Case{DType: f32, D: 64, Hq: 4, Hk: 2, Varlen: true, Causal: true, Splits: 3,
		Lq: []int{4, 3, 1}, Lk: []int{60, 30, 50}}, func(c *quantCase) { c.nonFinite = true })
	// V scales far apart between keys (the coopmat tier's probabilities are relative to a
	// tile's largest V scale, and go element-wise beyond 2^12).
	add(conformance.Case{DType: f32, D: 128, Hq: 8, Hk: 2, Lq: []int{2}, Lk: []int{100}, Causal: true, Splits: 2},
		func(c *quantCase) { c.spread = true })
	// One new token of GQA 4 over varlen keys whose tails are not whole 32-key tiles, in several
	// chunks (the tensor-core kernels' common shape, INT8's tails staged), with NaN and Inf
	// inputs (NaN K and V scales) too.
	gqa := conformance.Case{DType: f32, D: 128, Hq: 16, Hk: 4, Varlen: true, Splits: 3,
		Lq: []int{1, 1, 1, 1}, Lk: []int{300, 33, 1000, 70}}
	add(gqa, nil)
	add(gqa, func(c *quantCase) { c.nonFinite = true })
	return cs
}

// immaKernel is the tensor-core decode kernel of K and V quantized as kv (Int8 or Int4).
func immaKernel(kv quant.Format) string { return "decode_" + kv.String() + "_imma" }

// immaFits reports whether kv's tensor-core kernel takes case c (on a device that runs it, with K
// and V as the tests upload them, dense and contiguous): at most 16 rows per (sequence, kv head),
// a head dim that is a multiple of 32 up to 128, and one scale group a row (INT4: d = 32 to 128).
func immaFits(kv quant.Format, c conformance.Case) bool {
	return slices.Max(c.Lq)*c.Hq/c.Hk <= 16 && c.D%32 == 0 && c.D <= 128 && kv.Groups(c.D) == 1
}

// immaOn turns the tensor-core kernels on for the rest of t (DecodeIMMAEnv 1: they are off by
// default) and reports whether e's device runs kv's.
func immaOn(t *testing.T, e *attention.Engine, kv quant.Format) bool {
	t.Setenv(attention.DecodeIMMAEnv, "1")
	_, kernel, err := attention.AutoDecode(e.Profile(), attention.DecodeOps[kv], memory.F16, 128, 4)
	require.NoError(t, err)
	return kernel == immaKernel(kv)
}

// TestDecodeQuantized: quantized decode at every tier the device decodes at, each forced,
// against quant's float64 reference over the dequantized inputs, to the float kernels'
// tolerance (fp32 accumulation: 1e-5 of the largest output for f32 outputs), outputs poisoned,
// NaN where the reference has it and only there. On a device with the tensor-core kernels, INT8
// and INT4 run at the coopmat tier twice: with the format's kernel, on the cases it takes, to the
// tolerance its two-term quantization adds (compareIMMA), and without it (DecodeIMMAEnv 0), the
// tier's fp16 kernel. A failure prints the seed; VKATTN_SEED replays it.
func TestDecodeQuantized(t *testing.T) {
	e := engine(t)
	for _, kv := range []quant.Format{quant.Int8, quant.Int4} {
		for _, tier := range e.QuantizedDecodeTiers() {
			modes := []string{""}
			if tier == devices.TierCoopMat && immaOn(t, e, kv) {
				modes = []string{"imma", "imma-off"}
			}
			for _, mode := range modes {
				name := kv.String() + "/" + tier.String()
				if mode != "" {
					name += "/" + mode
				}
				t.Run(name, func(t *testing.T) {
					if mode == "imma-off" {
						t.Setenv(attention.DecodeIMMAEnv, "0")
					}
					for _, c := range quantDecodeCases(kv, tier, mode == "imma") {
						t.Run(c.String(), func(t *testing.T) {
							engine(t)
							s := seed(t)
							replay(t, s)
							in := c.draw(t, conformance.NewRand(s))
							wantO, wantLSE := in.want(t, c)
							d := in.upload(t, e, c)
							kernel := d.run(t, e)
							want := "decode_" + kv.String() + "_" + tier.String()
							if mode == "imma" {
								want = immaKernel(kv)
							}
							require.True(t, strings.HasPrefix(kernel, want), "%s, want %s", kernel, want)
							if c.nonFinite {
								nan := 0
								for _, x := range wantO {
									if math.IsNaN(x) {
										nan++
									}
								}
								require.True(t, nan > 0 && nan < len(wantO), "%d of %d outputs NaN", nan, len(wantO))
							}
							gotO, gotLSE := download(t, d.o), download(t, d.lse)
							if mode == "imma" {
								in.compareIMMA(t, c, gotO, gotLSE, wantO, wantLSE)
								return
							}
							rel, err := conformance.CompareOutput(gotO, wantO, conformance.Tolerance(c.DType))
							require.NoError(t, err, "kernel %s", kernel)
							if d.lse != nil {
								require.NoError(t, conformance.CompareLSE(gotLSE, wantLSE), "kernel %s", kernel)
							}
							t.Logf("%s: relative error %.3g", kernel, rel)
						})
					}
				})
			}
		}
	}
}

// randomQuantized is a quant.Tensor of format f with uniformly random fields, any that fits the
// format's bits (Int8's -128 too, which Quantize never produces; E4M3's NaN codes only where
// special is set, at the first element), and random bf16 scales of either sign; where special
// is set, one scale is 0 and the last NaN.
func randomQuantized(t *testing.T, r *rand.Rand, f quant.Format, tokens, heads, d int, scale float64, special bool) *quant.Tensor {
	t.Helper()
	fields := make([]uint8, tokens*heads*d)
	for i := range fields {
		fields[i] = uint8(r.IntN(1 << f.Bits()))
		for f == quant.E4M3 && fields[i]&0x7f == 0x7f {
			fields[i] = uint8(r.IntN(256))
		}
	}
	if special && f == quant.E4M3 {
		fields[0] = quant.E4M3NaN
	}
	scales := make([]uint16, tokens*heads*f.Groups(d))
	for i := range scales {
		scales[i] = quant.BF16Bits(float32(scale * r.NormFloat64()))
	}
	if special && len(scales) > 2 {
		scales[1], scales[len(scales)-1] = 0, quant.NaNScale
	}
	x, err := quant.Pack(f, fields, scales, tokens, heads, d)
	require.NoError(t, err)
	return x
}

// TestDecodeQuantizedEqualsFloatDecode: quantized decode equals Decode over the dequantized
// values (quant's Dequantize, uploaded as f32) bit for bit, outputs and logsumexps, at each tier:
// the kernels stage the same float tiles, so this holds the dequantization in the kernel to
// quant's arithmetic exactly (at the scalar and subgroup tiers; the coopmat tier multiplies fp16
// codes and applies the scales to scores and probabilities, TestDecodeQuantized checks it), for every code (random fields, Int8's -128, FP8's NaN codes, zero
// and NaN scales, negative scales) and for FP8 queries and in-kernel query scaling, whose float
// counterparts are quant's dequantized queries and the queries scaled on the host. At the
// subgroup tier quantized K/V load each step a step ahead by default and float K/V at the step's
// start; a last mode runs both at the step's start.
func TestDecodeQuantizedEqualsFloatDecode(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, kv := range []quant.Format{quant.Int8, quant.Int4} {
		for _, tier := range e.QuantizedDecodeTiers() {
			if tier == devices.TierCoopMat {
				continue // fp16 matrices, scales applied to scores and probabilities: TestDecodeQuantized
			}
			modes := []string{"float", "scaled", "fp8"}
			if tier == devices.TierSubgroup {
				modes = append(modes, "float-noprefetch") // both load at the step's start
			}
			for _, mode := range modes {
				for _, c := range []conformance.Case{
					{D: 128, Hq: 8, Hk: 2, Lq: []int{5}, Lk: []int{140}, Batch: 2, Causal: true, Splits: 3},
					{D: 256, Hq: 4, Hk: 4, Lq: []int{1}, Lk: []int{70}, Splits: 1},
					{D: 64, Hq: 6, Hk: 3, Varlen: true, Lq: []int{2, 0, 16}, Lk: []int{50, 7, 33}, Causal: true},
				} {
					c.DType, c.Tier, c.Decode = memory.F32, tier, true
					t.Run(fmt.Sprintf("%v/%v/%s/%v", kv, tier, mode, c), func(t *testing.T) {
						engine(t)
						if mode == "float-noprefetch" {
							t.Setenv(attention.DecodePrefetchEnv, "0")
						}
						s := seed(t)
						replay(t, s)
						r := conformance.NewRand(s)
						p, opts := c.Params()
						qs, ks := c.Shapes()
						kq := randomQuantized(t, r, kv, p.TotalK(), c.Hk, c.D, 0.02, true)
						vq := randomQuantized(t, r, kv, p.TotalK(), c.Hk, c.D, 0.1, true)
						qf := conformance.Randn(r, memory.F32, p.TotalQ()*c.Hq*c.D)
						qo := attention.QuantizedDecodeOptions{DecodeOptions: attention.DecodeOptions{Options: opts, Splits: c.Splits}}
						var q *memory.Tensor
						switch mode {
						case "fp8":
							qq := randomQuantized(t, r, quant.E4M3, p.TotalQ(), c.Hq, c.D, 0.003, true)
							qo.FP8Queries = uploadQuantized(t, e, qq, qs)
							qf = qq.Dequantize()
						case "scaled":
							ksc := &quant.KeyScales{Heads: c.Hk, Dim: c.D, Q: make([]float32, c.Hk*c.D)}
							for i := range ksc.Q {
								ksc.Q[i] = float32(math.Exp(2 * r.NormFloat64()))
							}
							qo.QueryScales = newTensor(t, e, memory.F32, c.Hk, c.D)
							require.NoError(t, qo.QueryScales.Upload(ctx, ksc.Q))
							q = newTensor(t, e, memory.F32, qs...)
							require.NoError(t, q.Upload(ctx, qf))
							var err error
							qf, err = ksc.ScaleQueries(qf, c.Hq)
							require.NoError(t, err)
						default:
							q = newTensor(t, e, memory.F32, qs...)
							require.NoError(t, q.Upload(ctx, qf))
						}
						k, v := uploadQuantized(t, e, kq, ks), uploadQuantized(t, e, vq, ks)
						qFloat, kFloat, vFloat := newTensor(t, e, memory.F32, qs...), newTensor(t, e, memory.F32, ks...), newTensor(t, e, memory.F32, ks...)
						require.NoError(t, qFloat.Upload(ctx, qf))
						require.NoError(t, kFloat.Upload(ctx, kq.Dequantize()))
						require.NoError(t, vFloat.Upload(ctx, vq.Dequantize()))
						var outs [2][2]*memory.Tensor // [quantized, float][o, lse]
						for i := range outs {
							outs[i][0] = newTensor(t, e, memory.F32, qs...)
							outs[i][1] = newTensor(t, e, memory.F32, qs[:len(qs)-1]...)
							for _, x := range outs[i] {
								require.NoError(t, x.Fill(ctx, conformance.Poison))
							}
						}
						kq1, err := e.DecodeQuantizedInto(ctx, outs[0][0], outs[0][1], q, k, v, qo)
						require.NoError(t, err)
						kf, err := e.DecodeInto(ctx, outs[1][0], outs[1][1], qFloat, kFloat, vFloat, qo.DecodeOptions)
						require.NoError(t, err)
						require.Equal(t, strings.HasSuffix(kf, "+merge"), strings.HasSuffix(kq1, "+merge"))
						nan := 0
						for j, what := range []string{"o", "lse"} {
							got, want := download(t, outs[0][j]), download(t, outs[1][j])
							for i := range want {
								g, w := math.Float32bits(got[i]), math.Float32bits(want[i])
								if g != w && !(got[i] != got[i] && want[i] != want[i]) {
									t.Fatalf("%s: %s[%d] = %v (%#x), Decode over the dequantized values gives %v (%#x)", kq1, what, i, got[i], g, want[i], w)
								}
								if want[i] != want[i] {
									nan++
								}
							}
						}
						t.Logf("%s = %s bit for bit (%d NaN)", kq1, kf, nan)
					})
				}
			}
		}
	}
}

// TestDecodeQuantizedAccuracy: quantized decode on Gaussian data against the float64 oracle on
// the unquantized data, within the gates quant holds its own reference to: cosine similarity
// >= 0.9995 for INT8 K and V (the target), >= 0.999 with FP8 queries too, and >= 0.985 for
// INT4, not the 0.99 target, which quant's INT4 format does not reach on Gaussian data (about
// 0.989 at d = 128, see quant's TestQuantizedAttentionGaussian); the kernel matches quant's
// reference to fp32 rounding (TestDecodeQuantized), so no kernel can do better with the format.
// On a device with the tensor-core kernels, INT8 and INT4 at the coopmat tier run them too, on
// fewer new tokens (at most 16 rows), to the same gates. go test -v prints cosine and relative L1.
func TestDecodeQuantizedAccuracy(t *testing.T) {
	e := engine(t)
	for _, g := range []struct {
		kv         quant.Format
		fp8        bool
		cos, relL1 float64
	}{
		{quant.Int8, false, 0.9995, 0.015},
		{quant.Int8, true, 0.999, 0.04},
		{quant.Int4, false, 0.985, 0.17},
		{quant.Int4, true, 0.985, 0.17},
	} {
		for _, tier := range e.QuantizedDecodeTiers() {
			lqs := [][]int{{1, 16, 4}}
			imma := tier == devices.TierCoopMat && immaOn(t, e, g.kv)
			if imma {
				lqs = append(lqs, []int{1, 4, 2}) // at most 16 rows: the tensor-core kernels'
			}
			for _, lq := range lqs {
				c := quantCase{kv: g.kv, fp8: g.fp8, Case: conformance.Case{DType: quantDType(tier), D: 128, Hq: 8, Hk: 2, Varlen: true,
					Causal: true, Lq: lq, Lk: []int{1500, 623, 1024}, Tier: tier, Decode: true}}
				fits := imma && immaFits(g.kv, c.Case)
				if fits {
					c.DType = memory.F32 // it takes every query type
				} else if g.fp8 && tier == devices.TierCoopMat {
					continue // refused: fp16 matrices
				}
				t.Run(c.String(), func(t *testing.T) {
					engine(t)
					s := seed(t)
					replay(t, s)
					r := conformance.NewRand(s)
					in := c.draw(t, r)
					want, _, err := reference.Forward(in.p, conformance.Widen(in.q), conformance.Widen(in.kf), conformance.Widen(in.vf))
					require.NoError(t, err)
					d := in.upload(t, e, c)
					kernel := d.run(t, e)
					if fits {
						require.Equal(t, immaKernel(g.kv), strings.TrimSuffix(kernel, "+merge"))
					}
					got := conformance.Widen(download(t, d.o))
					cos, l1 := quant.CosineSimilarity(got, want), quant.RelativeL1(got, want)
					t.Logf("%s: cosine %.6f, relative L1 %.4f", kernel, cos, l1)
					require.GreaterOrEqual(t, cos, g.cos)
					require.LessOrEqual(t, l1, g.relL1)
				})
			}
		}
	}
}

// TestDecodeQuantizedBadInputs: a malformed quantized decode returns an error naming the
// offending argument, dispatches nothing (the poisoned outputs are untouched) and leaks nothing,
// through DecodeQuantizedInto, TimeDecodeQuantized and, where o is q-shaped, DecodeQuantized.
// The checks Decode shares are tested with it (TestDecodeBadInputs); here are a few of them, and
// what the quantized inputs add.
func TestDecodeQuantizedBadInputs(t *testing.T) {
	// The INT8 tensor-core kernel would take the call of f32 queries that the case "tier coopmat"
	// forces to the coopmat tier, where its fp16 kernel refuses them (and the INT4 one INT4's).
	t.Setenv(attention.DecodeIMMAEnv, "0")
	e := engine(t)
	e2 := secondEngine(t)
	ctx := context.Background()
	const f32, f16, bf16 = memory.F32, memory.F16, memory.BF16
	r := conformance.NewRand(1)
	q := newTensor(t, e, f32, 2, 3, 4, 64)
	require.NoError(t, q.Fill(ctx, 0x3c003c00))
	o := newTensor(t, e, f32, 2, 3, 4, 64)
	lse := newTensor(t, e, f32, 2, 3, 4)
	q17, o17 := newTensor(t, e, f32, 2, 17, 4, 64), newTensor(t, e, f32, 2, 17, 4, 64)
	require.NoError(t, q17.Fill(ctx, 0x3c003c00))
	qv, ov := newTensor(t, e, f32, 20, 4, 64), newTensor(t, e, f32, 20, 4, 64)
	require.NoError(t, qv.Fill(ctx, 0x3c003c00))
	kvShape := []int{2, 40, 2, 64}
	quantized := func(f quant.Format, shape ...int) *attention.Quantized {
		n := 1
		for _, s := range shape[:len(shape)-2] {
			n *= s
		}
		return uploadQuantized(t, e, randomQuantized(t, r, f, n, shape[len(shape)-2], shape[len(shape)-1], 0.1, false), shape)
	}
	k, v := quantized(quant.Int8, kvShape...), quantized(quant.Int8, kvShape...)
	kv, vv := quantized(quant.Int8, 80, 2, 64), quantized(quant.Int8, 80, 2, 64)
	fp8 := quantized(quant.E4M3, 2, 3, 4, 64)
	qs := newTensor(t, e, f32, 2, 64)
	require.NoError(t, qs.Fill(ctx, 0x3f800000))
	outs := []*memory.Tensor{o, lse, o17, ov}
	// Valid calls first, so that the engine holds what it keeps between calls.
	for _, opts := range []attention.QuantizedDecodeOptions{
		{DecodeOptions: attention.DecodeOptions{Splits: 3}, QueryScales: qs},
		{DecodeOptions: attention.DecodeOptions{Splits: 1}, FP8Queries: fp8},
	} {
		qq := q
		if opts.FP8Queries != nil {
			qq = nil
		}
		_, err := e.DecodeQuantizedInto(ctx, o, lse, qq, k, v, opts)
		require.NoError(t, err)
	}
	for _, x := range outs {
		require.NoError(t, x.Fill(ctx, conformance.Poison))
	}
	with := func(x *attention.Quantized, f func(*attention.Quantized)) *attention.Quantized {
		y := *x
		f(&y)
		return &y
	}
	closed := quantized(quant.Int8, kvShape...)
	closed.Codes.Close()
	foreign, err := e2.NewTensor(bf16, 2, 40, 2, 1)
	require.NoError(t, err)
	defer foreign.Close()
	// A tensor whose buffer holds o's view too.
	shared := newTensor(t, e, f32, 2*40*2*16+2*3*4*64)
	sharedK := with(k, func(x *attention.Quantized) {
		x.Codes = view(t, shared, []int{2, 40, 2, 16}, []int{1280, 32, 16, 1}, 0)
	})
	oOverK := view(t, shared, []int{2, 3, 4, 64}, []int{768, 256, 64, 1}, 2*40*2*16-64)
	qsOverO := view(t, o, []int{2, 64}, []int{64, 1}, 0)
	closedQS := newTensor(t, e, f32, 2, 64)
	closedQS.Close()
	opt := func(f func(*attention.QuantizedDecodeOptions)) attention.QuantizedDecodeOptions {
		var o attention.QuantizedDecodeOptions
		f(&o)
		return o
	}
	cases := []struct {
		name          string
		o, lse, q     *memory.Tensor
		k, v          *attention.Quantized
		opts          attention.QuantizedDecodeOptions
		want          string
		defaultOutput bool // DecodeQuantized can run it (o is q-shaped, lse the valid one or none)
	}{
		{"nil k", o, lse, q, nil, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k is nil", true},
		{"nil q", o, lse, nil, k, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: q is nil", true},
		{"codes missing", o, lse, q, with(k, func(x *attention.Quantized) { x.Codes = nil }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Codes is nil", true},
		{"scales missing", o, lse, q, k, with(v, func(x *attention.Quantized) { x.Scales = nil }), opt(func(*attention.QuantizedDecodeOptions) {}), "attention: v.Scales is nil", true},
		{"closed codes", o, lse, q, closed, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Codes: memory: closed", true},
		{"foreign scales", o, lse, q, k, with(v, func(x *attention.Quantized) { x.Scales = foreign }), opt(func(*attention.QuantizedDecodeOptions) {}), "attention: v.Scales: memory: tensor belongs to another allocator", true},
		{"format e4m3", o, lse, q, with(k, func(x *attention.Quantized) { x.Format = quant.E4M3 }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k has format e4m3, want int8 or int4", true},
		{"formats differ", o, lse, q, k, quantized(quant.Int4, kvShape...), opt(func(*attention.QuantizedDecodeOptions) {}), "attention: v is int4 but k is int8: k and v must share a format", true},
		{"codes dtype", o, lse, q, with(k, func(x *attention.Quantized) { x.Codes = newTensor(t, e, f16, 2, 40, 2, 16) }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Codes must hold 32-bit words (an f32 tensor), got f16", true},
		{"scales dtype", o, lse, q, with(k, func(x *attention.Quantized) { x.Scales = newTensor(t, e, f32, 2, 40, 2, 1) }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Scales must be bf16, got f32", true},
		{"scales groups", o, lse, q, with(k, func(x *attention.Quantized) { x.Scales = newTensor(t, e, bf16, 2, 40, 2, 2) }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Scales has 2 scales per row, want 1 (int8, head dim 64)", true},
		{"scales tokens", o, lse, q, with(k, func(x *attention.Quantized) { x.Scales = newTensor(t, e, bf16, 2, 39, 2, 1) }), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Scales has shape [2 39 2 1] but k.Codes has [2 40 2 16]: they must agree but for the last dim", true},
		{"codes rank", o, lse, q, kv, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k.Codes has shape [80 2 16], want [batch, seq, heads, words]", true},
		{"head dim", o, lse, q, quantized(quant.Int8, 2, 40, 2, 32), v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: k has head dim 32 but q has 64", true},
		{"shape v", o, lse, q, k, quantized(quant.Int8, 2, 30, 2, 64), opt(func(*attention.QuantizedDecodeOptions) {}), "attention: v has shape [2 30 2 64] but k has [2 40 2 64]", true},
		{"dtype o", newTensor(t, e, f16, 2, 3, 4, 64), nil, q, k, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: o is f16 but q is f32: q and o must share a dtype", false},
		{"o over k", oOverK, nil, q, sharedK, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: o overlaps k.Codes", false},
		{"lse over codes", o, view(t, v.Codes, []int{2, 3, 4}, []int{12, 4, 1}, 0), q, k, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: lse overlaps v.Codes", false},
		{"fp8 and q", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.FP8Queries = fp8 }), "attention: q and QuantizedDecodeOptions.FP8Queries are both set", true},
		{"fp8 format", o, lse, nil, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.FP8Queries = quantized(quant.Int8, 2, 3, 4, 64) }), "attention: FP8Queries has format int8, want e4m3", true},
		{"fp8 scales missing", o, lse, nil, k, v, opt(func(o *attention.QuantizedDecodeOptions) {
			o.FP8Queries = with(fp8, func(x *attention.Quantized) { x.Scales = nil })
		}), "attention: FP8Queries.Scales is nil", true},
		{"fp8 and query scales", o, lse, nil, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.FP8Queries, o.QueryScales = fp8, qs }),
			"attention: QuantizedDecodeOptions.QueryScales: FP8 queries are scaled before they are quantized", true},
		{"query scales shape", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.QueryScales = newTensor(t, e, f32, 2, 32) }),
			"attention: QuantizedDecodeOptions.QueryScales must be a contiguous f32 tensor of shape [2 64] (KV heads, head dim), got f32 [2 32]", true},
		{"query scales dtype", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.QueryScales = newTensor(t, e, f16, 2, 64) }),
			"attention: QuantizedDecodeOptions.QueryScales must be a contiguous f32 tensor of shape [2 64] (KV heads, head dim), got f16", true},
		{"query scales closed", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.QueryScales = closedQS }),
			"attention: QuantizedDecodeOptions.QueryScales: memory: closed", true},
		{"query scales over o", o, nil, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.QueryScales = qsOverO }),
			"attention: o overlaps QuantizedDecodeOptions.QueryScales", false},
		{"17 tokens", o17, nil, q17, k, v, opt(func(*attention.QuantizedDecodeOptions) {}), "attention: q: Decode takes 1 to 16 query tokens per sequence, got 17", true},
		{"varlen offsets", ov, nil, qv, kv, vv, opt(func(o *attention.QuantizedDecodeOptions) {
			o.CuSeqlensQ, o.CuSeqlensK = []int{0, 3, 20}, []int{0, 40, 81}
		}), "attention: CuSeqlensK[2] = 81 is past the 80 tokens of k", true},
		{"splits negative", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.Splits = -1 }), "attention: DecodeOptions.Splits must be >= 0, got -1", true},
		{"tier coopmat", o, lse, q, k, v, opt(func(o *attention.QuantizedDecodeOptions) { o.Tier = devices.TierCoopMat }), "tier coopmat", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			engine(t)
			before := liveStats(e)
			check := func(what string, err error) {
				t.Helper()
				require.ErrorContains(t, err, c.want, what)
				require.Equal(t, before, liveStats(e), "%s leaked", what)
			}
			_, err := e.DecodeQuantizedInto(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts)
			check("DecodeQuantizedInto", err)
			_, _, err = e.TimeDecodeQuantized(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts, 1, 2)
			check("TimeDecodeQuantized", err)
			if c.defaultOutput {
				for _, withLSE := range []bool{false, true} {
					opts := c.opts
					opts.LSE = withLSE
					res, err := e.DecodeQuantized(ctx, c.q, c.k, c.v, opts)
					require.Nil(t, res)
					check("DecodeQuantized", err)
				}
			}
			requireUnwritten(t, outs...)
		})
	}
	// A closed engine refuses everything.
	e3 := secondEngine(t)
	e3.Close()
	_, err = e3.DecodeQuantized(ctx, q, k, v, attention.QuantizedDecodeOptions{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e3.DecodeQuantizedInto(ctx, o, lse, q, k, v, attention.QuantizedDecodeOptions{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, _, err = e3.TimeDecodeQuantized(ctx, o, lse, q, k, v, attention.QuantizedDecodeOptions{}, 0, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e3.UploadQuantized(ctx, randomQuantized(t, r, quant.Int8, 1, 1, 64, 1, false), 1, 1, 64)
	require.ErrorIs(t, err, attention.ErrClosed)
}

// TestUploadQuantized: UploadQuantized keeps codes and scales exactly (NaN and zero scales too)
// and refuses shapes that do not hold the tensor, allocating nothing.
func TestUploadQuantized(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	r := conformance.NewRand(2)
	for _, f := range []quant.Format{quant.Int8, quant.Int4, quant.E4M3} {
		x := randomQuantized(t, r, f, 6, 3, 256, 1, true)
		d := uploadQuantized(t, e, x, []int{2, 3, 3, 256})
		require.Equal(t, []int{2, 3, 3, 256}, d.Shape())
		require.Equal(t, []int{2, 3, 3, 256 / f.PerWord()}, d.Codes.Shape)
		require.Equal(t, []int{2, 3, 3, f.Groups(256)}, d.Scales.Shape)
		words := download(t, d.Codes)
		for i, w := range x.Words {
			require.Equal(t, w, math.Float32bits(words[i]), "%v word %d", f, i)
		}
		scales := download(t, d.Scales)
		for i, s := range x.Scales {
			require.Equal(t, s, quant.BF16Bits(scales[i]), "%v scale %d", f, i)
		}
	}
	x := randomQuantized(t, r, quant.Int8, 6, 3, 64, 1, false)
	before := liveStats(e)
	for _, shape := range [][]int{{6, 3}, {6, 3, 32}, {5, 3, 64}, {6, 2, 64}, {2, 3, 3, 64, 1}, {3, 2, 6, 64}} {
		_, err := e.UploadQuantized(ctx, x, shape...)
		require.ErrorContains(t, err, fmt.Sprintf("attention: UploadQuantized: shape %v does not hold a int8 tensor of 6 tokens, 3 heads of dim 64", shape))
	}
	_, err := e.UploadQuantized(ctx, nil, 1, 1, 64)
	require.ErrorContains(t, err, "attention: UploadQuantized: the tensor is nil")
	bad := *x
	bad.Scales = bad.Scales[1:]
	_, err = e.UploadQuantized(ctx, &bad, 6, 3, 64)
	require.ErrorContains(t, err, "attention: UploadQuantized: 288 words and 17 scales, want 288 and 18")
	require.Equal(t, before, liveStats(e))
}

// TestDecodeQuantizedRoPEAwareScaling: FireQ's RoPE-aware key scaling through the kernel (keys
// scaled by quant.KeyScales.K before INT4 quantization, queries by QueryScales in the kernel) on
// keys with outlier channel pairs, calibrated on other keys of the same distribution, is more
// accurate against the float64 oracle on the unquantized data than INT4 keys without it. go test
// -v prints both.
func TestDecodeQuantizedRoPEAwareScaling(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, tier := range e.QuantizedDecodeTiers() {
		if tier == devices.TierCoopMat {
			continue // scaled queries are refused there (fp16 matrices)
		}
		c := quantCase{kv: quant.Int4, scaled: true, Case: conformance.Case{DType: quantDType(tier), D: 128, Hq: 8, Hk: 2, Varlen: true,
			Causal: true, Lq: []int{4, 1}, Lk: []int{1200, 800}, Tier: tier, Decode: true}}
		t.Run(c.String(), func(t *testing.T) {
			engine(t)
			s := seed(t)
			replay(t, s)
			in := c.draw(t, conformance.NewRand(s))
			want, _, err := reference.Forward(in.p, conformance.Widen(in.q), conformance.Widen(in.kf), conformance.Widen(in.vf))
			require.NoError(t, err)
			measure := func(d *deviceInputs) (cos, l1 float64) {
				kernel := d.run(t, e)
				got := conformance.Widen(download(t, d.o))
				cos, l1 = quant.CosineSimilarity(got, want), quant.RelativeL1(got, want)
				t.Logf("%s, query scales %v: cosine %.6f, relative L1 %.4f", kernel, d.opts.QueryScales != nil, cos, l1)
				return cos, l1
			}
			scaledCos, scaledL1 := measure(in.upload(t, e, c))
			// The same keys quantized unscaled, and unscaled queries.
			plain, err := quant.Quantize(quant.Int4, in.kf, in.p.TotalK(), c.Hk, c.D)
			require.NoError(t, err)
			d := in.upload(t, e, c)
			d.k, d.opts.QueryScales = uploadQuantized(t, e, plain, in.kShape), nil
			require.NoError(t, d.o.Fill(ctx, conformance.Poison))
			plainCos, plainL1 := measure(d)
			require.Greater(t, scaledCos, plainCos)
			require.Less(t, scaledL1, plainL1)
		})
	}
}

// TestDecodeQuantizedResult: DecodeQuantized allocates the output as the queries' type (f32 for
// FP8 queries) and shape, and the logsumexp where asked, and gives what DecodeQuantizedInto does.
func TestDecodeQuantizedResult(t *testing.T) {
	e := engine(t)
	for _, fp8 := range []bool{false, true} {
		c := quantCase{kv: quant.Int4, fp8: fp8, Case: conformance.Case{DType: memory.BF16, D: 256, Hq: 4, Hk: 2, Lq: []int{3},
			Lk: []int{100}, Batch: 2, Causal: true, Decode: true, Splits: 2}}
		if fp8 {
			c.DType = memory.F32
		}
		t.Run(c.String(), func(t *testing.T) {
			in := c.draw(t, conformance.NewRand(seed(t)))
			d := in.upload(t, e, c)
			kernel := d.run(t, e)
			res, err := e.DecodeQuantized(context.Background(), d.q, d.k, d.v, d.opts)
			require.NoError(t, err)
			defer res.Close()
			require.Equal(t, kernel, res.Kernel)
			require.Equal(t, c.DType, res.O.DType)
			require.Equal(t, in.qShape, res.O.Shape)
			require.Equal(t, in.qShape[:3], res.LSE.Shape)
			require.Equal(t, download(t, d.o), download(t, res.O))
			require.Equal(t, download(t, d.lse), download(t, res.LSE))
		})
	}
}

// TestDecodeQuantizedCoopMatRefusesWideQueries: the coopmat tier multiplies queries as fp16,
// which FP8 and scaled queries do not fit exactly, so forcing it for them is an error that says
// so, and the poisoned outputs stay untouched (on any device: the check comes first), where its
// tensor-core kernel, which takes them, does not take the call (head dim 80).
func TestDecodeQuantizedCoopMatRefusesWideQueries(t *testing.T) {
	e := engine(t)
	for option, f := range map[string]func(*quantCase){
		"FP8Queries":  func(c *quantCase) { c.fp8 = true },
		"QueryScales": func(c *quantCase) { c.scaled = true },
	} {
		c := quantCase{kv: quant.Int8, Case: conformance.Case{DType: memory.F16, D: 80, Hq: 4, Hk: 2, Lq: []int{2}, Lk: []int{40},
			Tier: devices.TierCoopMat, Decode: true}}
		f(&c)
		t.Run(c.String(), func(t *testing.T) {
			d := c.draw(t, conformance.NewRand(1)).upload(t, e, c)
			_, err := e.DecodeQuantizedInto(context.Background(), d.o, d.lse, d.q, d.k, d.v, d.opts)
			require.ErrorContains(t, err, "attention: "+option+": tier coopmat multiplies the queries as fp16")
			for _, x := range download(t, d.o) {
				require.True(t, math.IsNaN(float64(x)), "o was written: %v", x) // the poison is NaN in every type
			}
		})
	}
}
