// Package conformance is vkattn's kernel conformance suite: a matrix of attention problems (every
// dtype and head dim, masks, soft cap, grouped heads, odd and empty lengths, varlen batches), each
// run on a device on fresh random inputs with poisoned outputs and checked against the float64
// oracle in attention/reference, at each forward tier and through the naive baseline
// (Engine.NaiveForwardInto). The tests run it on lavapipe; `vkattn conformance` runs it on any
// device and writes a report.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// Poison fills outputs before each run: a NaN in every storage type, so an element a kernel
// fails to write fails the check.
const Poison = 0x7fc17fc1

// Tolerance is the largest error allowed, relative to the reference output's largest magnitude,
// by storage type: inputs are rounded to the type, so only the output rounding and the fp32
// accumulation remain.
func Tolerance(dt memory.DType) float64 {
	switch dt {
	case memory.F16:
		return 2e-3
	case memory.BF16:
		return 1e-2
	}
	return 1e-5
}

// LSETolerance is the largest error allowed in a logsumexp, relative to max(1, |lse|).
const LSETolerance = 1e-4

// NaiveTier is the tier name that cases of the naive baseline are reported under.
const NaiveTier = "naive"

// Case is one forward problem.
type Case struct {
	DType   memory.DType
	D       int
	Hq, Hk  int
	Lq, Lk  []int // per-sequence lengths; one entry without Varlen means a dense batch
	Batch   int   // dense batch size (without Varlen); 0 means 1
	Varlen  bool
	Causal  bool
	Window  *attention.Window
	Softcap float32
	Scale   float32
	Tier    devices.Tier // the forward tier forced; TierScalar, where the naive kernels run, for Naive
	NoLSE   bool
	Naive   bool // run through Engine.NaiveForwardInto, the unfused baseline, instead of ForwardInto
	Decode  bool // run through Engine.DecodeInto, the split-KV decode, at Tier
	Splits  int  // DecodeOptions.Splits of a Decode case; 0 is automatic
	// HeadsMajor stores K and V of a dense batch [Hk, B, Lk, D] in memory, so that each (head,
	// sequence)'s keys are contiguous as in PyTorch's [B, Hk, Lk, D], and passes them as strided
	// [B, Lk, Hk, D] views (HeadsMajorView). PyTorch's own order is not one the kernels take:
	// they address a batch's tokens with one token stride.
	HeadsMajor bool
}

// TierName is the tier the case's outcome is reported under: its Tier, NaiveTier, or
// DecodeTierName(Tier).
func (c Case) TierName() string {
	switch {
	case c.Naive:
		return NaiveTier
	case c.Decode:
		return DecodeTierName(c.Tier)
	}
	return c.Tier.String()
}

// DecodeTierName is the tier name that decode cases at tier t are reported under.
func DecodeTierName(t devices.Tier) string { return "decode-" + t.String() }

func (c Case) String() string {
	s := fmt.Sprintf("%s/d%d/h%d:%d/q%v/k%v", c.DType, c.D, c.Hq, c.Hk, c.Lq, c.Lk)
	if c.Varlen {
		s += "/varlen"
	} else if c.Batch > 1 {
		s += fmt.Sprintf("/b%d", c.Batch)
	}
	if c.Causal {
		s += "/causal"
	}
	if c.Window != nil {
		s += fmt.Sprintf("/win%d,%d", c.Window.Left, c.Window.Right)
	}
	if c.Softcap != 0 {
		s += fmt.Sprintf("/cap%g", c.Softcap)
	}
	if c.Scale != 0 {
		s += fmt.Sprintf("/scale%g", c.Scale)
	}
	if c.NoLSE {
		s += "/nolse"
	}
	if c.HeadsMajor {
		s += "/heads-major"
	}
	if c.Naive {
		s += "/naive"
	}
	if c.Decode {
		s += "/decode"
		if c.Splits != 0 {
			s += fmt.Sprintf("/splits%d", c.Splits)
		}
	}
	return s
}

// Params returns the oracle's parameters and the engine's options for the case.
func (c Case) Params() (reference.Params, attention.Options) {
	batch := max(c.Batch, 1)
	var cuQ, cuK []int
	if c.Varlen {
		cuQ, cuK = reference.Cumulative(c.Lq), reference.Cumulative(c.Lk)
	} else {
		cuQ, cuK = reference.Uniform(batch, c.Lq[0]), reference.Uniform(batch, c.Lk[0])
	}
	p := reference.Params{Hq: c.Hq, Hk: c.Hk, D: c.D, CuSeqlensQ: cuQ, CuSeqlensK: cuK,
		Scale: float64(c.Scale), Causal: c.Causal, WindowLeft: -1, WindowRight: -1, Softcap: float64(c.Softcap)}
	opts := attention.Options{Scale: c.Scale, Causal: c.Causal, Window: c.Window, Softcap: c.Softcap, LSE: !c.NoLSE, Tier: c.Tier}
	if c.Window != nil {
		p.WindowLeft, p.WindowRight = c.Window.Left, c.Window.Right
	}
	if c.Varlen {
		opts.CuSeqlensQ, opts.CuSeqlensK = cuQ, cuK
	}
	return p, opts
}

// Shapes returns the q and k (= v) tensor shapes of the case.
func (c Case) Shapes() (q, k []int) {
	if c.Varlen {
		p, _ := c.Params()
		return []int{p.TotalQ(), c.Hq, c.D}, []int{p.TotalK(), c.Hk, c.D}
	}
	b := max(c.Batch, 1)
	return []int{b, c.Lq[0], c.Hq, c.D}, []int{b, c.Lk[0], c.Hk, c.D}
}

// Inputs are the storage types of q, k, v and o that the forward kernels take at tier.
func Inputs(tier devices.Tier) []memory.DType {
	return attention.ForwardInputs(tier)
}

// ForwardCases is the forward conformance matrix at one tier.
func ForwardCases(tier devices.Tier) []Case {
	var cs []Case
	dtypes := Inputs(tier)
	if len(dtypes) == 0 {
		return nil
	}
	// Every dtype and head dim, with odd lengths, a batch and grouped heads.
	for _, dt := range dtypes {
		for _, d := range attention.HeadDims {
			cs = append(cs, Case{DType: dt, D: d, Hq: 4, Hk: 2, Lq: []int{37}, Lk: []int{45}, Batch: 2, Tier: tier})
		}
	}
	// Every dtype at the smallest, an odd and the largest head dim, with each mask, soft cap and
	// varlen, at lengths above twice any tile (64 queries by 64 keys): several query blocks, key
	// blocks that the masks cut partly and wholly, ragged last tiles.
	for _, dt := range dtypes {
		for _, d := range []int{32, 80, 256} {
			long := Case{DType: dt, D: d, Hq: 4, Hk: 2, Lq: []int{203}, Lk: []int{229}, Tier: tier}
			for _, f := range []func(*Case){
				func(c *Case) { c.Causal = true },
				func(c *Case) { c.Window = &attention.Window{Left: 40, Right: 8} },
				func(c *Case) { c.Causal, c.Window = true, &attention.Window{Left: 40, Right: 0} },
				func(c *Case) { c.Softcap = 5 },
				func(c *Case) { c.Varlen, c.Lq, c.Lk = true, []int{203, 0, 77}, []int{229, 5, 77} },
			} {
				c := long
				f(&c)
				cs = append(cs, c)
			}
		}
	}
	base := Case{DType: dtypes[0], D: 64, Hq: 4, Hk: 4, Tier: tier}
	with := func(f func(*Case)) {
		c := base
		f(&c)
		if slices.Contains(dtypes, c.DType) {
			cs = append(cs, c)
		}
	}
	// Causal at Lq < Lk, Lq = Lk, Lq > Lk (rows that see no key), and one query.
	for _, l := range [][2]int{{19, 70}, {64, 64}, {70, 19}, {1, 129}} {
		with(func(c *Case) { c.Lq, c.Lk, c.Causal = []int{l[0]}, []int{l[1]}, true })
	}
	// Sliding windows, one-sided and empty-sided, and with causal.
	for _, w := range []attention.Window{{Left: 3, Right: 0}, {Left: 16, Right: 4}, {Left: -1, Right: 2}, {Left: 5, Right: -1}, {Left: 0, Right: 0}} {
		with(func(c *Case) { c.Lq, c.Lk, c.Window = []int{50}, []int{61}, &w })
	}
	with(func(c *Case) {
		c.Lq, c.Lk, c.Window, c.Causal = []int{50}, []int{61}, &attention.Window{Left: 7, Right: 9}, true
	})
	// Soft cap, alone and with causal at fp16; an explicit scale.
	with(func(c *Case) { c.Lq, c.Lk, c.Softcap = []int{33}, []int{47}, 5 })
	with(func(c *Case) { c.Lq, c.Lk, c.Softcap, c.Causal, c.DType = []int{33}, []int{47}, 2, true, memory.F16 })
	with(func(c *Case) { c.Lq, c.Lk, c.Scale = []int{17}, []int{31}, 0.3 })
	// Lengths 1 and primes.
	for _, l := range [][2]int{{1, 1}, {1, 17}, {17, 1}, {31, 127}, {127, 31}} {
		with(func(c *Case) { c.Lq, c.Lk = []int{l[0]}, []int{l[1]} })
	}
	// MQA, GQA, and a head count that is no power of two.
	for _, h := range [][2]int{{8, 1}, {6, 2}, {3, 3}} {
		with(func(c *Case) { c.Hq, c.Hk, c.Lq, c.Lk = h[0], h[1], []int{29}, []int{41} })
	}
	// Varlen batches with an empty query sequence and a one-token one.
	for _, causal := range []bool{false, true} {
		with(func(c *Case) {
			c.Varlen, c.Causal, c.Hq, c.Hk = true, causal, 4, 2
			c.Lq, c.Lk = []int{5, 0, 1, 33, 17}, []int{7, 3, 1, 33, 40}
		})
	}
	with(func(c *Case) { c.Varlen, c.Lq, c.Lk, c.DType, c.D = true, []int{40, 9}, []int{9, 40}, memory.BF16, 128 })
	// No logsumexp requested.
	with(func(c *Case) { c.Lq, c.Lk, c.NoLSE, c.Batch = []int{21}, []int{21}, true, 3 })
	with(func(c *Case) { c.Lq, c.Lk, c.Batch, c.Hk, c.HeadsMajor = []int{37}, []int{45}, 2, 2, true })
	return cs
}

// NaiveCases is the forward matrix run through the naive baseline: ForwardCases at the scalar
// tier, where the naive kernels run.
func NaiveCases() []Case {
	cs := ForwardCases(devices.TierScalar)
	for i := range cs {
		cs[i].Naive = true
	}
	return cs
}

// DecodeCases is the decode conformance matrix at one tier (Engine.DecodeInto; the oracle is
// the forward's): every dtype with GQA ratios 1, 4 and 8 and 1, 5 and 16 new tokens, causal and
// not; every head dim; odd key lengths from 1; varlen batches with an empty sequence and one
// without keys; masks, soft cap and scale; no logsumexp; and chunks (DecodeOptions.Splits) of
// every kind: automatic, one, several, more than the key tiles, more than the keys. A tier whose
// kernels do not take a case's type (the coopmat tier takes fp16 and bf16) runs it in the first
// type it takes.
func DecodeCases(tier devices.Tier) []Case {
	var cs []Case
	dtypes := attention.DecodeInputs(tier)
	if len(dtypes) == 0 {
		return nil
	}
	splits := []int{0, 1, 3, 40}
	add := func(c Case) {
		c.Tier, c.Decode = tier, true
		if !slices.Contains(dtypes, c.DType) {
			c.DType = dtypes[0] // the coopmat tier's fp16 for fp32
		}
		cs = append(cs, c)
	}
	n := 0
	for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
		for _, h := range [][2]int{{4, 4}, {8, 2}, {8, 1}} {
			for _, lq := range []int{1, 5, 16} {
				n++
				add(Case{DType: dt, D: 64, Hq: h[0], Hk: h[1], Lq: []int{lq}, Lk: []int{299}, Batch: 2,
					Causal: lq > 1 && n%2 == 0, Splits: splits[n%len(splits)]})
			}
		}
	}
	for i, d := range attention.HeadDims {
		add(Case{DType: memory.F16, D: d, Hq: 8, Hk: 2, Lq: []int{3}, Lk: []int{77}, Causal: true, Splits: []int{0, 2}[i%2]})
	}
	base := Case{DType: memory.F32, D: 128, Hq: 4, Hk: 1}
	with := func(f func(*Case)) {
		c := base
		f(&c)
		add(c)
	}
	// Odd key lengths, one key, and causal with more new tokens than keys (rows that see none).
	for _, l := range [][2]int{{1, 1}, {2, 1}, {4, 3}, {7, 33}, {16, 129}} {
		for _, sp := range []int{1, 5} {
			with(func(c *Case) { c.Lq, c.Lk, c.Causal, c.Splits = []int{l[0]}, []int{l[1]}, true, sp })
		}
	}
	// Varlen: an empty sequence, one without keys, and lengths far apart, so chunks of the
	// longest leave the others' last chunks empty.
	for _, sp := range []int{0, 1, 4, 64} {
		for _, causal := range []bool{false, true} {
			with(func(c *Case) {
				c.Varlen, c.Causal, c.Splits, c.Hq, c.Hk = true, causal, sp, 8, 2
				c.Lq, c.Lk = []int{3, 0, 2, 16, 1}, []int{40, 9, 0, 300, 5}
			})
		}
	}
	with(func(c *Case) {
		c.Varlen, c.Lq, c.Lk, c.DType, c.Splits = true, []int{1, 1, 1}, []int{1000, 31, 257}, memory.BF16, 0
	})
	// A sliding window, a soft cap, an explicit scale, no logsumexp.
	with(func(c *Case) {
		c.Lq, c.Lk, c.Window, c.Splits = []int{4}, []int{200}, &attention.Window{Left: 50, Right: 0}, 6
	})
	with(func(c *Case) {
		c.Lq, c.Lk, c.Softcap, c.Causal, c.DType, c.Splits = []int{2}, []int{90}, 3, true, memory.F16, 3
	})
	with(func(c *Case) { c.Lq, c.Lk, c.Scale, c.Splits = []int{1}, []int{64}, 0.3, 2 })
	with(func(c *Case) { c.Lq, c.Lk, c.NoLSE, c.Batch, c.Splits = []int{3}, []int{50}, true, 3, 4 })
	// K and V heads-major (strided views, HeadsMajorView), at every storage type.
	for i, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
		add(Case{DType: dt, D: 128, Hq: 8, Hk: 2, Lq: []int{1 + 2*i}, Lk: []int{299}, Batch: 2, Causal: i > 0,
			Splits: []int{0, 5, 1}[i], HeadsMajor: true})
	}
	return cs
}

// Outcome is the result of one case.
type Outcome struct {
	Case       string        `json:"case"`
	Tier       string        `json:"tier"`
	Kernel     string        `json:"kernel,omitempty"`
	Seed       uint64        `json:"seed"`
	RelErr     float64       `json:"rel_err"`
	Tol        float64       `json:"tolerance"`
	Error      string        `json:"error,omitempty"`      // a wrong result or a failed call
	Validation []string      `json:"validation,omitempty"` // validation-layer errors raised by the case
	Duration   time.Duration `json:"duration_ns"`
}

// Passed reports whether the case passed: a right result and no validation error.
func (o Outcome) Passed() bool { return o.Error == "" && len(o.Validation) == 0 }

// Run runs one case on fresh inputs drawn from seed and checks it against the oracle.
func Run(ctx context.Context, e *attention.Engine, c Case, seed uint64) Outcome {
	start := time.Now()
	out := Outcome{Case: c.String(), Tier: c.TierName(), Seed: seed, Tol: Tolerance(c.DType)}
	kernel, rel, err := run(ctx, e, c, seed, nil)
	out.Kernel, out.RelErr, out.Duration = kernel, rel, time.Since(start)
	if err != nil {
		out.Error = fmt.Sprintf("%v (seed %d)", err, seed)
	}
	return out
}

// NewRand returns the generator the suite draws a case's inputs from for seed.
func NewRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// Randn returns n standard normal values rounded to dt.
func Randn(r *rand.Rand, dt memory.DType, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = dt.Round(float32(r.NormFloat64()))
	}
	return out
}

// Widen converts x to float64 for the oracle.
func Widen(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// HeadsMajorView is t, K or V stored [Hk, B, Lk, D], as the [B, Lk, Hk, D] view the kernels
// take.
func HeadsMajorView(t *memory.Tensor) (*memory.Tensor, error) {
	if len(t.Shape) != 4 || !t.Contiguous() {
		return nil, fmt.Errorf("conformance: heads-major K or V must be a contiguous [Hk, B, Lk, D] tensor, got %v strides %v", t.Shape, t.Strides)
	}
	h, b, l, d := t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	return t.View([]int{b, l, h, d}, []int{l * d, d, b * l * d, 1}, t.Offset)
}

// headsMajor reorders x of shape [b, l, h, d] into [h, b, l, d].
func headsMajor(x []float32, b, l, h, d int) []float32 {
	out := make([]float32, len(x))
	for i := range b {
		for t := range l {
			for j := range h {
				copy(out[((j*b+i)*l+t)*d:][:d], x[((i*l+t)*h+j)*d:][:d])
			}
		}
	}
	return out
}

// run runs c; tamper, if set, alters the engine's options only (the suite's own tests use it to
// show that a wrong kernel result fails).
func run(ctx context.Context, e *attention.Engine, c Case, seed uint64, tamper func(*attention.Options)) (string, float64, error) {
	if c.HeadsMajor && c.Varlen {
		return "", 0, errors.New("conformance: a heads-major case needs a dense batch")
	}
	r := NewRand(seed)
	p, opts := c.Params()
	if tamper != nil {
		tamper(&opts)
	}
	qs, ks := c.Shapes()
	nq, nk := p.TotalQ()*c.Hq*c.D, p.TotalK()*c.Hk*c.D
	qh, kh, vh := Randn(r, c.DType, nq), Randn(r, c.DType, nk), Randn(r, c.DType, nk)
	wantO, wantLSE, err := reference.Forward(p, Widen(qh), Widen(kh), Widen(vh))
	if err != nil {
		return "", 0, err
	}
	var ts []*memory.Tensor
	defer func() {
		for _, t := range ts {
			t.Close()
		}
	}()
	upload := func(data []float32, shape []int) (*memory.Tensor, error) {
		t, err := e.Upload(ctx, c.DType, data, shape...)
		if err == nil {
			ts = append(ts, t)
		}
		return t, err
	}
	poisoned := func(dt memory.DType, shape []int) (*memory.Tensor, error) {
		t, err := e.NewTensor(dt, shape...)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
		return t, t.Fill(ctx, Poison)
	}
	q, err := upload(qh, qs)
	if err != nil {
		return "", 0, err
	}
	uploadKV := upload
	if c.HeadsMajor {
		uploadKV = func(data []float32, shape []int) (*memory.Tensor, error) {
			b, l, h, d := shape[0], shape[1], shape[2], shape[3]
			t, err := upload(headsMajor(data, b, l, h, d), []int{h, b, l, d})
			if err != nil {
				return nil, err
			}
			return HeadsMajorView(t)
		}
	}
	k, err := uploadKV(kh, ks)
	if err != nil {
		return "", 0, err
	}
	v, err := uploadKV(vh, ks)
	if err != nil {
		return "", 0, err
	}
	o, err := poisoned(c.DType, qs)
	if err != nil {
		return "", 0, err
	}
	var lse *memory.Tensor
	if !c.NoLSE {
		if lse, err = poisoned(memory.F32, qs[:len(qs)-1]); err != nil {
			return "", 0, err
		}
	}
	var kernel string
	switch {
	case c.Decode:
		kernel, err = e.DecodeInto(ctx, o, lse, q, k, v, attention.DecodeOptions{Options: opts, Splits: c.Splits})
	case c.Naive:
		kernel, err = e.NaiveForwardInto(ctx, o, lse, q, k, v, opts)
	default:
		kernel, err = e.ForwardInto(ctx, o, lse, q, k, v, opts)
	}
	if err != nil {
		return kernel, 0, err
	}
	got, err := o.Download(ctx)
	if err != nil {
		return kernel, 0, err
	}
	rel, err := CompareOutput(got, wantO, Tolerance(c.DType))
	if err != nil {
		return kernel, rel, err
	}
	if lse != nil {
		gotLSE, err := lse.Download(ctx)
		if err != nil {
			return kernel, rel, err
		}
		if err := CompareLSE(gotLSE, wantLSE); err != nil {
			return kernel, rel, err
		}
	}
	return kernel, rel, nil
}

// CompareOutput checks got against want: no NaN where want has none, and the largest error
// relative to want's largest magnitude within tol. It returns that relative error.
func CompareOutput(got []float32, want []float64, tol float64) (float64, error) {
	if len(got) != len(want) {
		return 0, fmt.Errorf("output has %d values, want %d", len(got), len(want))
	}
	maxRef, maxErr, worst := 0.0, 0.0, 0
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(w) != math.IsNaN(g) {
			return math.Inf(1), fmt.Errorf("o[%d] = %v, want %v (unwritten, or NaN leaked across rows)", i, g, w)
		}
		if math.IsNaN(w) {
			continue
		}
		maxRef = math.Max(maxRef, math.Abs(w))
		if d := math.Abs(g - w); d > maxErr {
			maxErr, worst = d, i
		}
	}
	rel := maxErr / math.Max(maxRef, 1e-30)
	if maxRef == 0 {
		rel = maxErr
	}
	if rel > tol {
		return rel, fmt.Errorf("relative error %.3g > %.3g (worst o[%d] = %v, want %v)", rel, tol, worst, got[worst], want[worst])
	}
	return rel, nil
}

// CompareLSE checks a logsumexp output against the oracle within LSETolerance; rows that see no
// key must be -Inf.
func CompareLSE(got []float32, want []float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("lse has %d values, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := float64(got[i])
		switch {
		case math.IsNaN(w) || math.IsInf(w, 0):
			if !(math.IsNaN(w) && math.IsNaN(g)) && g != w {
				return fmt.Errorf("lse[%d] = %v, want %v", i, g, w)
			}
		case math.IsNaN(g) || math.Abs(g-w) > LSETolerance*math.Max(1, math.Abs(w)):
			return fmt.Errorf("lse[%d] = %v, want %v", i, g, w)
		}
	}
	return nil
}
