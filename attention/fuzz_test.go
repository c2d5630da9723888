package attention_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// fuzzCase is one fuzzed forward call, decoded from the raw fuzz arguments into small sizes so
// that an iteration takes milliseconds; invalid values are kept, not repaired.
type fuzzCase struct {
	dt               memory.DType
	d, hq, hk        int
	batch, lq, lk    int // dense
	varlen           bool
	cuQ, cuK         []int // varlen, possibly tampered with
	totalQ, totalK   int   // varlen tensors' tokens
	opts             attention.Options
	refLeft, refRght int // the window for the oracle
}

func (c fuzzCase) String() string {
	w := "none"
	if c.opts.Window != nil {
		w = fmt.Sprintf("%+v", *c.opts.Window)
	}
	shape := fmt.Sprintf("b%d q%d k%d", c.batch, c.lq, c.lk)
	if c.varlen {
		shape = fmt.Sprintf("varlen cuQ %v cuK %v (tokens %d, %d)", c.cuQ, c.cuK, c.totalQ, c.totalK)
	}
	return fmt.Sprintf("%s d%d h%d:%d %s causal=%v window=%s softcap=%v scale=%v tier=%v lse=%v",
		c.dt, c.d, c.hq, c.hk, shape, c.opts.Causal, w, c.opts.Softcap, c.opts.Scale, c.opts.Tier, c.opts.LSE)
}

func decodeFuzz(dtype uint8, dim int8, hq, hk, batch, lq, lk uint8, causal, window bool, wl, wr int64,
	softcap, scale float32, varlen bool, lens []byte, tamper, tier uint8, lse bool) fuzzCase {
	c := fuzzCase{dt: memory.DType(dtype % 4), hq: int(hq % 9), hk: int(hk % 9), varlen: varlen}
	if dim >= 0 {
		c.d = attention.HeadDims[int(dim)%len(attention.HeadDims)]
	} else {
		c.d = -int(dim) // 1..128: mostly unsupported head dims
	}
	c.opts = attention.Options{Causal: causal, LSE: lse, Tier: devices.Tier(tier % 6)}
	if window {
		c.opts.Window = &attention.Window{Left: int(wl), Right: int(wr)}
	}
	// Finite values are folded into ranges where fp32 and the float64 oracle agree to the
	// tolerances (an exponent of 1e6 is ill-conditioned, not wrong); NaN, Inf and negative soft
	// caps are kept, to be refused.
	c.opts.Softcap = softcap
	if !math.IsNaN(float64(softcap)) && !math.IsInf(float64(softcap), 0) {
		c.opts.Softcap = float32(math.Mod(float64(softcap), 50))
	}
	c.opts.Scale = scale
	if !math.IsNaN(float64(scale)) && !math.IsInf(float64(scale), 0) {
		c.opts.Scale = float32(math.Mod(float64(scale), 0.5))
	}
	if !varlen {
		c.batch, c.lq, c.lk = int(batch%4), int(lq%65), int(lk%65)
		return c
	}
	var lensQ, lensK []int
	for i := 0; i+1 < len(lens) && i < 8; i += 2 {
		lensQ, lensK = append(lensQ, int(lens[i]%40)), append(lensK, int(lens[i+1]%40))
	}
	c.cuQ, c.cuK = reference.Cumulative(lensQ), reference.Cumulative(lensK)
	c.totalQ, c.totalK = c.cuQ[len(c.cuQ)-1], c.cuK[len(c.cuK)-1]
	n := len(c.cuQ)
	switch tamper % 8 {
	case 3:
		c.cuQ[n-1]++
	case 4:
		c.cuK[0] = 1
	case 5:
		if n > 2 {
			c.cuQ[1], c.cuQ[2] = c.cuQ[2], c.cuQ[1]
		}
	case 6:
		c.cuK = nil
	case 7:
		c.cuK = append(c.cuK, c.cuK[n-1])
	}
	c.opts.CuSeqlensQ, c.opts.CuSeqlensK = c.cuQ, c.cuK
	return c
}

// params returns the oracle's parameters, and whether the engine must accept the call.
func (c fuzzCase) params(e *attention.Engine) (reference.Params, bool) {
	p := reference.Params{Hq: c.hq, Hk: c.hk, D: c.d, Scale: float64(c.opts.Scale), Causal: c.opts.Causal,
		WindowLeft: -1, WindowRight: -1, Softcap: float64(c.opts.Softcap)}
	if w := c.opts.Window; w != nil {
		// The oracle computes i + lk - lq + Right in int: give it the equivalent bounded window.
		p.WindowLeft, p.WindowRight = min(w.Left, 1<<20), min(w.Right, 1<<20)
	}
	if c.varlen {
		p.CuSeqlensQ, p.CuSeqlensK = c.cuQ, c.cuK
	} else {
		p.CuSeqlensQ, p.CuSeqlensK = reference.Uniform(c.batch, c.lq), reference.Uniform(c.batch, c.lk)
	}
	valid := c.dt <= memory.BF16 && slices.Contains(attention.HeadDims, c.d) &&
		(c.opts.Tier == devices.TierAuto || slices.Contains(e.ForwardTiers(), c.opts.Tier)) &&
		p.Validate() == nil
	if c.varlen {
		valid = valid && c.totalQ > 0 && c.totalK > 0 && p.TotalQ() == c.totalQ && p.TotalK() == c.totalK
	} else {
		valid = valid && c.batch > 0 && c.lq > 0 && c.lk > 0
	}
	return p, valid
}

// FuzzForwardOptions: over dtypes, head dims, head counts, dense and varlen shapes, masks, soft
// caps, scales and tiers, an invalid call returns an error (never a panic or a validation-layer
// error), a valid one matches the float64 oracle, and neither leaks.
func FuzzForwardOptions(f *testing.F) {
	type seed struct {
		dtype, dim, hq, hk, batch, lq, lk int
		causal, window                    bool
		wl, wr                            int64
		softcap, scale                    float32
		varlen                            bool
		lens                              []byte
		tamper, tier                      int
		lse                               bool
	}
	for _, s := range []seed{
		{dtype: 0, dim: 1, hq: 4, hk: 2, batch: 2, lq: 17, lk: 33, lse: true},                             // f32 d64 GQA
		{dtype: 1, dim: 0, hq: 3, hk: 1, batch: 1, lq: 40, lk: 9, causal: true, lse: true},                // f16 d32 MQA, causal lq > lk
		{dtype: 2, dim: 4, hq: 2, hk: 2, batch: 3, lq: 1, lk: 64},                                         // bf16 d128 decode
		{dtype: 0, dim: 2, hq: 1, hk: 1, batch: 1, lq: 21, lk: 30, window: true, wl: 4, wr: 0, lse: true}, // d80 window
		{dtype: 0, dim: 3, hq: 2, hk: 1, batch: 1, lq: 9, lk: 9, causal: true, window: true, wl: 1 << 40, wr: -1, softcap: 3.5, scale: 0.2},
		{dtype: 1, dim: 6, hq: 2, hk: 2, batch: 1, lq: 5, lk: 7, softcap: 1e-3, lse: true},                                               // d256, tiny cap
		{dtype: 0, dim: 5, hq: 4, hk: 4, varlen: true, lens: []byte{5, 7, 0, 3, 1, 1, 33, 20}, causal: true, lse: true},                  // d192 varlen, empty query sequence
		{dtype: 2, dim: 1, hq: 2, hk: 1, varlen: true, lens: []byte{12, 4, 3, 19}, window: true, wl: -1, wr: 2, scale: -0.3, tier: 1},    // scalar tier
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, window: true, wl: math.MaxInt64, wr: math.MaxInt64, tier: 2, lse: true}, // huge window = none
		// Invalid.
		{dtype: 0, dim: -48, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8},                             // head dim 48
		{dtype: 1, dim: -63, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8},                             // odd 16-bit head dim
		{dtype: 0, dim: 1, hq: 3, hk: 2, batch: 1, lq: 8, lk: 8},                               // Hq % Hk
		{dtype: 0, dim: 1, hq: 2, hk: 0, batch: 1, lq: 8, lk: 8},                               // no kv heads
		{dtype: 3, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8},                               // dtype
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 0, lq: 8, lk: 8},                               // batch 0
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, window: true, wl: -2, wr: 0},  // window
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, softcap: float32(math.NaN())}, // softcap
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, softcap: -2},                  // softcap
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, scale: float32(math.Inf(1))},  // scale
		{dtype: 0, dim: 1, hq: 2, hk: 2, batch: 1, lq: 8, lk: 8, tier: 5},                      // tier
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{3, 4, 5, 6}, tamper: 3},    // CuSeqlensQ ends past q
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{3, 4, 5, 6}, tamper: 4},    // CuSeqlensK[0] != 0
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{3, 4, 5, 6}, tamper: 5},    // out of order
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{3, 4, 5, 6}, tamper: 6},    // CuSeqlensK nil
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{3, 4, 5, 6}, tamper: 7},    // counts differ
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: []byte{0, 4, 0, 6}},               // no query tokens
		{dtype: 0, dim: 1, hq: 2, hk: 2, varlen: true, lens: nil},                              // no sequences
	} {
		f.Add(uint8(s.dtype), int8(s.dim), uint8(s.hq), uint8(s.hk), uint8(s.batch), uint8(s.lq), uint8(s.lk),
			s.causal, s.window, s.wl, s.wr, s.softcap, s.scale, s.varlen, s.lens, uint8(s.tamper), uint8(s.tier), s.lse)
	}
	// A first call makes the engine's sequence table, which it keeps.
	e := engine(f)
	c := decodeFuzz(0, 0, 1, 1, 1, 1, 1, false, false, 0, 0, 0, 0, false, nil, 0, 0, false)
	p, _ := c.params(e)
	require.NoError(f, runFuzzCase(e, c, p, true))
	f.Fuzz(func(t *testing.T, dtype uint8, dim int8, hq, hk, batch, lq, lk uint8, causal, window bool, wl, wr int64,
		softcap, scale float32, varlen bool, lens []byte, tamper, tier uint8, lse bool) {
		e := engine(t)
		c := decodeFuzz(dtype, dim, hq, hk, batch, lq, lk, causal, window, wl, wr, softcap, scale, varlen, lens, tamper, tier, lse)
		p, valid := c.params(e)
		before := liveStats(e)
		err := runFuzzCase(e, c, p, valid)
		require.Equal(t, before, liveStats(e), "%s: leaked", c)
		if valid {
			require.NoError(t, err, "%s", c)
		} else {
			require.Error(t, err, "%s: invalid, but accepted", c)
		}
	})
}

// runFuzzCase runs c; for a valid case it checks the result against the oracle (p).
func runFuzzCase(e *attention.Engine, c fuzzCase, p reference.Params, valid bool) error {
	ctx := context.Background()
	var ts []*memory.Tensor
	defer func() {
		for _, x := range ts {
			x.Close()
		}
	}()
	qs, ks := []int{c.batch, c.lq, c.hq, c.d}, []int{c.batch, c.lk, c.hk, c.d}
	if c.varlen {
		qs, ks = []int{c.totalQ, c.hq, c.d}, []int{c.totalK, c.hk, c.d}
	}
	r := newRand(uint64(c.lq)<<32 | uint64(c.lk)<<16 | uint64(c.totalQ))
	n := func(shape []int) int {
		m := 1
		for _, s := range shape {
			m *= max(s, 0)
		}
		return m
	}
	var data [3][]float32
	for i, s := range [][]int{qs, ks, ks} {
		data[i] = randVals(r, c.dt, n(s))
		x, err := e.Upload(ctx, c.dt, data[i], s...)
		if err != nil {
			return err
		}
		ts = append(ts, x)
	}
	o, err := e.NewTensor(c.dt, qs...)
	if err != nil {
		return err
	}
	ts = append(ts, o)
	if err := o.Fill(ctx, conformance.Poison); err != nil {
		return err
	}
	var lse *memory.Tensor
	if c.opts.LSE {
		if lse, err = e.NewTensor(memory.F32, qs[:len(qs)-1]...); err != nil {
			return err
		}
		ts = append(ts, lse)
		if err := lse.Fill(ctx, conformance.Poison); err != nil {
			return err
		}
	}
	if _, err := e.ForwardInto(ctx, o, lse, ts[0], ts[1], ts[2], c.opts); err != nil {
		return err
	}
	if !valid {
		return nil // the caller reports the call accepted
	}
	wantO, wantLSE, err := reference.Forward(p, widen(data[0]), widen(data[1]), widen(data[2]))
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	got, err := o.Download(ctx)
	if err != nil {
		return err
	}
	if _, err := conformance.CompareOutput(got, wantO, conformance.Tolerance(c.dt)); err != nil {
		return err
	}
	if lse != nil {
		gotLSE, err := lse.Download(ctx)
		if err != nil {
			return err
		}
		return conformance.CompareLSE(gotLSE, wantLSE)
	}
	return nil
}
