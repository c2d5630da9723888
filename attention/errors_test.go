package attention_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

// newTensor allocates a tensor of e for the test, closed at cleanup.
func newTensor(t *testing.T, e *attention.Engine, dt memory.DType, shape ...int) *memory.Tensor {
	t.Helper()
	x, err := e.NewTensor(dt, shape...)
	require.NoError(t, err)
	t.Cleanup(x.Close)
	return x
}

// view is x.View that must succeed.
func view(t *testing.T, x *memory.Tensor, shape, strides []int, offset int) *memory.Tensor {
	t.Helper()
	v, err := x.View(shape, strides, offset)
	require.NoError(t, err)
	return v
}

// usage is the part of the allocator's stats that a leak changes: not the blocks it keeps for
// reuse, nor its staging buffer.
type usage struct {
	liveBuffers, dedicated    int
	liveBytes, usedBlockBytes uint64
}

func liveStats(e *attention.Engine) usage {
	s := e.Allocator().Stats()
	return usage{s.LiveBuffers, s.Dedicated, s.LiveBytes, s.BlockBytes - s.FreeBlockBytes}
}

// secondEngine opens another engine on the same device, closed at cleanup with its validation
// messages checked.
func secondEngine(t *testing.T) *attention.Engine {
	t.Helper()
	e2, err := attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	if err != nil {
		testenv.NoDevice(t, err)
	}
	t.Cleanup(func() {
		e2.Close()
		testenv.CheckValidation(t, e2.Instance())
	})
	return e2
}

// TestForwardBadInputs: every malformed call returns an error naming the offending argument,
// dispatches nothing (the poisoned output is untouched) and leaks nothing; through ForwardInto,
// TimeForward, NaiveForwardInto and, where o is q-shaped, Forward.
func TestForwardBadInputs(t *testing.T) {
	e := engine(t)
	e2 := secondEngine(t)
	ctx := context.Background()
	const f32, f16, bf16 = memory.F32, memory.F16, memory.BF16

	// A valid dense call: q, o [2, 5, 4, 64], k, v [2, 7, 2, 64], lse [2, 5, 4].
	q := newTensor(t, e, f32, 2, 5, 4, 64)
	k := newTensor(t, e, f32, 2, 7, 2, 64)
	v := newTensor(t, e, f32, 2, 7, 2, 64)
	o := newTensor(t, e, f32, 2, 5, 4, 64)
	lse := newTensor(t, e, f32, 2, 5, 4)
	// A valid varlen call: sequences of 4 and 5 queries, 5 and 7 keys.
	qv := newTensor(t, e, f32, 9, 4, 64)
	kv := newTensor(t, e, f32, 12, 2, 64)
	vv := newTensor(t, e, f32, 12, 2, 64)
	ov := newTensor(t, e, f32, 9, 4, 64)
	lsev := newTensor(t, e, f32, 9, 4)
	cuQ, cuK := []int{0, 4, 9}, []int{0, 5, 12}
	varlen := attention.Options{CuSeqlensQ: cuQ, CuSeqlensK: cuK}
	for _, x := range []*memory.Tensor{q, k, v, qv, kv, vv} {
		require.NoError(t, x.Fill(ctx, 0x3c003c00))
	}
	for _, x := range []*memory.Tensor{o, lse, ov, lsev} {
		require.NoError(t, x.Fill(ctx, conformance.Poison))
	}

	closed := newTensor(t, e, f32, 2, 5, 4, 64)
	closed.Close()
	viewed := newTensor(t, e, f32, 2, 7, 2, 64)
	closedView := view(t, viewed, []int{2, 7, 2, 64}, []int{896, 128, 64, 1}, 0)
	viewed.Close() // the view's tensor, closed under it
	foreign, err := e2.NewTensor(f32, 2, 7, 2, 64)
	require.NoError(t, err)

	// Bad tensors of other shapes and types.
	q16 := newTensor(t, e, f16, 2, 5, 4, 64)
	k16 := newTensor(t, e, f16, 2, 7, 2, 64)
	obf := newTensor(t, e, bf16, 2, 5, 4, 64)
	q48, k48, o48 := newTensor(t, e, f32, 2, 5, 4, 48), newTensor(t, e, f32, 2, 7, 2, 48), newTensor(t, e, f32, 2, 5, 4, 48)
	k32 := newTensor(t, e, f32, 2, 7, 2, 32)
	v3h := newTensor(t, e, f32, 2, 7, 3, 64)
	q3h, o3h := newTensor(t, e, f32, 2, 5, 3, 64), newTensor(t, e, f32, 2, 5, 3, 64)
	o6 := newTensor(t, e, f32, 2, 6, 4, 64)
	v6 := newTensor(t, e, f32, 2, 6, 2, 64)
	k1 := newTensor(t, e, f32, 1, 7, 2, 64)
	v1 := newTensor(t, e, f32, 1, 7, 2, 64)
	q3 := newTensor(t, e, f32, 10, 4, 64)
	lse16 := newTensor(t, e, f16, 2, 5, 4)
	lseShape := newTensor(t, e, f32, 2, 5, 3)
	lseBig := newTensor(t, e, f32, 41)
	lseOff := view(t, lseBig, []int{2, 5, 4}, []int{20, 4, 1}, 1)
	lseStrided := view(t, newTensor(t, e, f32, 2, 5, 8), []int{2, 5, 4}, []int{40, 8, 2}, 0)
	// Strided views of a [2, 5, 4, 128] tensor.
	wide := newTensor(t, e, f32, 2, 5, 4, 128)
	qHeadStride := view(t, wide, []int{2, 5, 4, 64}, []int{2560, 512, 128, 2}, 0)
	qBatchGap := view(t, wide, []int{2, 5, 4, 64}, []int{2560, 256, 64, 1}, 0)
	wide16 := newTensor(t, e, f16, 2, 5, 4, 65)
	q16Odd := view(t, wide16, []int{2, 5, 4, 64}, []int{1300, 260, 65, 1}, 0)
	q16Off := view(t, newTensor(t, e, f16, 2*5*4*64+1), []int{2, 5, 4, 64}, []int{1280, 256, 64, 1}, 1)
	// Outputs that alias inputs or themselves.
	// kShared and oOverK share a buffer: o's first row is k's last.
	shared := newTensor(t, e, f32, 1792+2560-64)
	kShared := view(t, shared, []int{2, 7, 2, 64}, []int{896, 128, 64, 1}, 0)
	oOverK := view(t, shared, []int{2, 5, 4, 64}, []int{1280, 256, 64, 1}, 1792-64)
	lseOverO := view(t, o, []int{2, 5, 4}, []int{20, 4, 1}, 0)
	oBroadcast := view(t, o, []int{2, 5, 4, 64}, []int{0, 0, 64, 1}, 0)
	oHeadsAlias := view(t, o, []int{2, 5, 4, 64}, []int{1280, 256, 32, 1}, 0)

	type call struct {
		name          string
		o, lse        *memory.Tensor
		q, k, v       *memory.Tensor
		opts          attention.Options
		want          string // a substring of the error naming the offending argument
		is            error  // if set, errors.Is must hold
		skipNaive     bool   // NaiveForwardInto ignores the option at fault
		defaultOutput bool   // o is the baseline o (or ov), so Forward can run the case too
	}
	dense := func(c call) call {
		if c.o == nil && !strings.Contains(c.want, "o is nil") {
			c.o, c.defaultOutput = o, true
		}
		return c
	}
	cases := []call{
		dense(call{name: "nil q", k: k, v: v, lse: lse, want: "attention: q is nil"}),
		dense(call{name: "nil k", q: q, v: v, lse: lse, want: "attention: k is nil"}),
		dense(call{name: "nil v", q: q, k: k, lse: lse, want: "attention: v is nil"}),
		{name: "nil o", q: q, k: k, v: v, lse: lse, want: "attention: o is nil"},
		dense(call{name: "closed q", q: closed, k: k, v: v, want: "attention: q: memory: closed", is: memory.ErrClosed}),
		dense(call{name: "closed view v", q: q, k: k, v: closedView, want: "attention: v: memory: closed", is: memory.ErrClosed}),
		{name: "closed o", o: closed, q: q, k: k, v: v, want: "attention: o: memory: closed", is: memory.ErrClosed},
		dense(call{name: "closed lse", lse: closed, q: q, k: k, v: v, want: "attention: lse: memory: closed", is: memory.ErrClosed}),
		dense(call{name: "foreign k", q: q, k: foreign, v: v, want: "attention: k: memory: tensor belongs to another allocator", is: memory.ErrForeign}),
		dense(call{name: "foreign lse", lse: foreign, q: q, k: k, v: v, want: "attention: lse: memory: tensor belongs to another allocator", is: memory.ErrForeign}),
		dense(call{name: "dtype k", q: q, k: k16, v: v, want: "attention: k is f16 but q is f32"}),
		{name: "dtype o", o: obf, q: q, k: k, v: v, want: "attention: o is bf16 but q is f32"},
		dense(call{name: "dtype q", q: q16, k: k, v: v, want: "attention: k is f32 but q is f16"}),
		dense(call{name: "rank q", q: q3, k: k, v: v, want: "attention: q has shape [10 4 64], want [batch, seq, heads, head_dim]"}),
		{name: "rank varlen", o: o, q: q, k: k, v: v, opts: varlen, want: "attention: q has shape [2 5 4 64], want [tokens, heads, head_dim] (varlen"},
		{name: "head dim 48", o: o48, q: q48, k: k48, v: k48, want: "attention: q: head dim 48 is not supported"},
		dense(call{name: "head dim k", q: q, k: k32, v: v, want: "attention: k has head dim 32 but q has 64"}),
		dense(call{name: "head dim v", q: q, k: k, v: k32, want: "attention: v has head dim 32 but q has 64"}),
		dense(call{name: "heads v", q: q, k: k, v: v3h, want: "attention: v has 3 heads but k has 2"}),
		{name: "heads not a multiple", o: o3h, q: q3h, k: k, v: v, want: "attention: q has 3 heads, not a multiple of k and v's 2"},
		{name: "shape o", o: o6, q: q, k: k, v: v, want: "attention: o has shape [2 6 4 64], want q's [2 5 4 64]"},
		dense(call{name: "shape v", q: q, k: k, v: v6, want: "attention: v has shape [2 6 2 64] but k has [2 7 2 64]"}),
		dense(call{name: "batch", q: q, k: k1, v: v1, want: "attention: k has batch 1 but q has 2"}),
		dense(call{name: "lse dtype", lse: lse16, q: q, k: k, v: v, want: "attention: lse must be a contiguous f32 tensor of shape [2 5 4], got f16"}),
		dense(call{name: "lse shape", lse: lseShape, q: q, k: k, v: v, want: "attention: lse must be a contiguous f32 tensor of shape [2 5 4], got f32 [2 5 3]"}),
		dense(call{name: "lse strided", lse: lseStrided, q: q, k: k, v: v, want: "attention: lse must be a contiguous f32 tensor"}),
		dense(call{name: "lse offset", lse: lseOff, q: q, k: k, v: v, want: "attention: lse must start at its buffer's beginning"}),
		dense(call{name: "head dim stride", q: qHeadStride, k: k, v: v, want: "attention: q: the head dim must be contiguous"}),
		dense(call{name: "batch stride", q: qBatchGap, k: k, v: v, want: "attention: q: batch stride 2560 must equal seq_len*token stride 1280"}),
		{name: "16-bit odd stride", o: newTensor(t, e, f16, 2, 5, 4, 64), q: q16Odd, k: k16, v: k16, want: "attention: q: 16-bit tensors need even offsets and strides"},
		{name: "16-bit odd offset", o: newTensor(t, e, f16, 2, 5, 4, 64), q: q16Off, k: k16, v: k16, want: "attention: q: 16-bit tensors need even offsets and strides"},
		{name: "o is q", o: q, q: q, k: k, v: v, want: "attention: o overlaps q"},
		{name: "o over k", o: oOverK, q: q, k: kShared, v: v, want: "attention: o overlaps k"},
		dense(call{name: "lse over o", lse: lseOverO, q: q, k: k, v: v, want: "attention: lse overlaps o"}),
		dense(call{name: "lse is v", lse: view(t, v, []int{2, 5, 4}, []int{20, 4, 1}, 0), q: q, k: k, v: v, want: "attention: lse overlaps v"}),
		{name: "o broadcast", o: oBroadcast, q: q, k: k, v: v, want: "attention: o: shape [2 5 4 64] strides [0 0 64 1] address an element more than once"},
		{name: "o heads alias", o: oHeadsAlias, q: q, k: k, v: v, want: "attention: o: shape [2 5 4 64] strides [1280 256 32 1] address an element more than once"},
		dense(call{name: "window left", q: q, k: k, v: v, opts: attention.Options{Window: &attention.Window{Left: -2, Right: 3}}, want: "attention: Options.Window bounds must be >= -1, got {Left:-2 Right:3}"}),
		dense(call{name: "window right", q: q, k: k, v: v, opts: attention.Options{Window: &attention.Window{Left: 0, Right: math.MinInt}}, want: "attention: Options.Window bounds must be >= -1"}),
		dense(call{name: "softcap negative", q: q, k: k, v: v, opts: attention.Options{Softcap: -1}, want: "attention: Options.Softcap must be finite and >= 0, got -1"}),
		dense(call{name: "softcap NaN", q: q, k: k, v: v, opts: attention.Options{Softcap: float32(math.NaN())}, want: "attention: Options.Softcap must be finite and >= 0, got NaN"}),
		dense(call{name: "softcap Inf", q: q, k: k, v: v, opts: attention.Options{Softcap: float32(math.Inf(1))}, want: "attention: Options.Softcap must be finite and >= 0, got +Inf"}),
		dense(call{name: "scale NaN", q: q, k: k, v: v, opts: attention.Options{Scale: float32(math.NaN())}, want: "attention: Options.Scale must be finite, got NaN"}),
		dense(call{name: "scale -Inf", q: q, k: k, v: v, opts: attention.Options{Scale: float32(math.Inf(-1))}, want: "attention: Options.Scale must be finite, got -Inf"}),
		dense(call{name: "tier", q: q, k: k, v: v, opts: attention.Options{Tier: devices.Tier(99)}, want: "attention: tier", skipNaive: true}),
	}
	// Varlen offsets.
	for _, c := range []struct {
		name     string
		cuQ, cuK []int
		want     string
	}{
		{"only K", nil, cuK, "attention: CuSeqlensQ is nil but CuSeqlensK is set"},
		{"only Q", cuQ, nil, "attention: CuSeqlensK is nil but CuSeqlensQ is set"},
		{"empty Q", []int{}, cuK, "attention: CuSeqlensQ needs at least 2 entries, got 0"},
		{"one entry K", cuQ, []int{0}, "attention: CuSeqlensK needs at least 2 entries, got 1"},
		{"not from 0", []int{1, 4, 9}, cuK, "attention: CuSeqlensQ[0] = 1, want 0"},
		{"out of order", []int{0, 6, 4, 9}, []int{0, 5, 6, 12}, "attention: CuSeqlensQ is out of order at 2: 4 < 6"},
		{"negative", cuQ, []int{0, -1, 12}, "attention: CuSeqlensK is out of order at 1: -1 < 0"},
		{"past the end", []int{0, 10, 9}, cuK, "attention: CuSeqlensQ[1] = 10 is past the 9 tokens of q"},
		{"short of the end", []int{0, 4, 8}, cuK, "attention: CuSeqlensQ ends at 8 but q has 9 tokens"},
		{"K short of the end", cuQ, []int{0, 5, 11}, "attention: CuSeqlensK ends at 11 but k has 12 tokens"},
		{"sequence counts", cuQ, []int{0, 12}, "attention: CuSeqlensK has 2 entries but CuSeqlensQ has 3"},
	} {
		cases = append(cases, call{name: "varlen " + c.name, o: ov, lse: lsev, q: qv, k: kv, v: vv,
			opts: attention.Options{CuSeqlensQ: c.cuQ, CuSeqlensK: c.cuK}, want: c.want, defaultOutput: true})
	}

	// A valid call first: it allocates what the engine keeps between calls (its sequence table,
	// pipelines), so that the failing calls can be held to allocating nothing.
	_, err = e.ForwardInto(ctx, o, lse, q, k, v, attention.Options{})
	require.NoError(t, err)
	_, err = e.ForwardInto(ctx, ov, lsev, qv, kv, vv, varlen)
	require.NoError(t, err)
	for _, x := range []*memory.Tensor{o, lse, ov, lsev} {
		require.NoError(t, x.Fill(ctx, conformance.Poison))
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			engine(t)
			before := liveStats(e)
			check := func(what string, err error) {
				t.Helper()
				require.Error(t, err, what)
				require.Contains(t, err.Error(), c.want, what)
				if c.is != nil {
					require.ErrorIs(t, err, c.is, what)
				}
				require.Equal(t, before, liveStats(e), "%s leaked", what)
			}
			_, err := e.ForwardInto(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts)
			check("ForwardInto", err)
			_, _, err = e.TimeForward(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts, 1, 2)
			check("TimeForward", err)
			if !c.skipNaive {
				_, err = e.NaiveForwardInto(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts)
				check("NaiveForwardInto", err)
			}
			// Forward makes its own o and lse: it runs the cases whose fault is elsewhere.
			if c.defaultOutput && (c.lse == nil || c.lse == lse || c.lse == lsev) {
				for _, withLSE := range []bool{false, true} {
					opts := c.opts
					opts.LSE = withLSE
					res, err := e.Forward(ctx, c.q, c.k, c.v, opts)
					require.Nil(t, res)
					check("Forward", err)
				}
			}
			requireUnwritten(t, o, lse, ov, lsev)
		})
	}
	foreign.Close()
}

// TestClosedEngine: a closed engine refuses everything with ErrClosed, its tensors are closed,
// and closing it again is fine.
func TestClosedEngine(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	e2, err := attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	if err != nil {
		testenv.NoDevice(t, err)
	}
	q, err := e2.Upload(ctx, memory.F32, make([]float32, 4*64), 1, 4, 1, 64)
	require.NoError(t, err)
	o, err := e2.NewTensor(memory.F32, 1, 4, 1, 64)
	require.NoError(t, err)
	res, err := e2.Forward(ctx, q, q, q, attention.Options{LSE: true}) // a live result at Close
	require.NoError(t, err)
	e2.Close()
	e2.Close()
	testenv.CheckValidation(t, e2.Instance()) // nothing left behind at vkDestroyDevice

	require.True(t, q.Closed())
	require.True(t, res.O.Closed())
	require.True(t, res.LSE.Closed())
	require.ErrorIs(t, q.Upload(ctx, make([]float32, 4*64)), memory.ErrClosed)
	_, err = q.Download(ctx)
	require.ErrorIs(t, err, memory.ErrClosed)
	res.Close()
	q.Close()

	_, err = e2.Forward(ctx, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e2.ForwardInto(ctx, o, nil, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, _, err = e2.TimeForward(ctx, o, nil, q, q, q, attention.Options{}, 0, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e2.NaiveForwardInto(ctx, o, nil, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e2.NewTensor(memory.F32, 4)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e2.Upload(ctx, memory.F32, []float32{1}, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
	var none *attention.Engine
	_, err = none.Forward(ctx, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = none.ForwardInto(ctx, o, nil, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, _, err = none.TimeForward(ctx, o, nil, q, q, q, attention.Options{}, 0, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = none.NaiveForwardInto(ctx, o, nil, q, q, q, attention.Options{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, _, err = none.TimeNaive(ctx, o, nil, q, q, q, attention.Options{}, 0, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
	(*attention.Engine)(nil).Close()

	// The closed engine's tensors are foreign (and closed) to a live engine.
	before := liveStats(e)
	_, err = e.Forward(ctx, o, o, o, attention.Options{})
	require.ErrorContains(t, err, "attention: q: memory: tensor belongs to another allocator")
	require.Equal(t, before, liveStats(e))
}

// TestNewTensorBadSizes: zero, negative and too-large sizes fail before anything is allocated.
func TestNewTensorBadSizes(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	lim := int(e.Profile().MaxStorageBufferRange)
	before := liveStats(e)
	for _, c := range []struct {
		name  string
		dt    memory.DType
		shape []int
		want  string
	}{
		{"zero", memory.F32, []int{2, 0, 4, 64}, "dimension 1 is 0"},
		{"negative", memory.F16, []int{2, 5, -4, 64}, "dimension 2 is -4"},
		{"no dims", memory.F32, nil, "at least one dimension"},
		{"over range", memory.F32, []int{1, lim/(4*64) + 1, 1, 64}, "maxStorageBufferRange"},
		{"over range 16-bit", memory.BF16, []int{2, lim/256 + 1, 1, 64}, "maxStorageBufferRange"},
		{"overflow", memory.F32, []int{1 << 40, 1 << 40, 1 << 40, 64}, "maxStorageBufferRange"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x, err := e.NewTensor(c.dt, c.shape...)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, x)
			require.Equal(t, before, liveStats(e))
		})
	}
	_, err := e.Upload(ctx, memory.F32, make([]float32, 5), 2, 3)
	require.ErrorContains(t, err, "5 values for a tensor of 6")
	require.Equal(t, before, liveStats(e), "a failed Upload frees its tensor")
}

// TestForwardNaNInfStayInTheirRows: a NaN in one query row and +Inf in one key of one sequence
// of a varlen batch reach exactly the outputs that read them, as in the oracle; every other row
// is finite and correct. At every tier the device runs, each forced, through the naive
// baseline, and through Decode at every tier it runs (one chunk, and three merged).
func TestForwardNaNInfStayInTheirRows(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	kernels := nonFiniteKernels(e)
	const hq, hk, d = 4, 2, 64
	lq, lk := []int{5, 7, 4}, []int{6, 9, 5}
	cuQ, cuK := reference.Cumulative(lq), reference.Cumulative(lk)
	nanTok, nanHead := cuQ[1]+2, 1 // query 2 of sequence 1, head 1
	infTok, infHead := cuK[2]+3, 0 // key 3 of sequence 2, kv head 0 (read by q heads 0 and 1)
	const infCol = 5
	forEachNonFiniteRun(t, kernels, func(t *testing.T, kern nonFiniteKernel, dt memory.DType, causal bool) {
		r := newRand(uint64(dt)*2 + 1)
		p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: cuQ, CuSeqlensK: cuK, Causal: causal,
			WindowLeft: -1, WindowRight: -1}
		qh, kh, vh := randVals(r, dt, cuQ[3]*hq*d), randVals(r, dt, cuK[3]*hk*d), randVals(r, dt, cuK[3]*hk*d)
		qh[(nanTok*hq+nanHead)*d+7] = float32(math.NaN())
		kh[(infTok*hk+infHead)*d+infCol] = float32(math.Inf(1))
		// Queries of sequence 2 that read the Inf key with a positive weight: score +Inf.
		for tok := cuQ[2]; tok < cuQ[3]; tok++ {
			for h := 0; h < hq; h++ {
				x := &qh[(tok*hq+h)*d+infCol]
				*x = dt.Round(float32(math.Abs(float64(*x))) + 0.25)
			}
		}
		wantO, wantLSE, err := reference.Forward(p, widen(qh), widen(kh), widen(vh))
		require.NoError(t, err)

		q, k, v := upload(t, e, dt, qh, cuQ[3], hq, d), upload(t, e, dt, kh, cuK[3], hk, d), upload(t, e, dt, vh, cuK[3], hk, d)
		o := newTensor(t, e, dt, cuQ[3], hq, d)
		lse := newTensor(t, e, memory.F32, cuQ[3], hq)
		require.NoError(t, o.Fill(ctx, conformance.Poison))
		require.NoError(t, lse.Fill(ctx, conformance.Poison))
		_, err = kern.forward(ctx, o, lse, q, k, v, attention.Options{CuSeqlensQ: cuQ, CuSeqlensK: cuK, Causal: causal})
		require.NoError(t, err)
		got, err := o.Download(ctx)
		require.NoError(t, err)
		gotLSE, err := lse.Download(ctx)
		require.NoError(t, err)

		nanRows := 0
		for tok := 0; tok < cuQ[3]; tok++ {
			for h := 0; h < hq; h++ {
				// Does row (tok, h) read the NaN or the Inf?
				reads := tok == nanTok && h == nanHead
				if tok >= cuQ[2] && h/(hq/hk) == infHead {
					i, j := tok-cuQ[2], infTok-cuK[2]
					reads = reads || p.Visible(i, j, lq[2], lk[2])
				}
				row := got[(tok*hq+h)*d:][:d]
				for c, x := range row {
					w := wantO[(tok*hq+h)*d+c]
					require.Equal(t, reads, math.IsNaN(w), "oracle row %d head %d", tok, h)
					if reads {
						require.True(t, math.IsNaN(float64(x)), "o[%d, %d, %d] = %v, want NaN", tok, h, c, x)
						continue
					}
					require.False(t, math.IsNaN(float64(x)) || math.IsInf(float64(x), 0), "o[%d, %d, %d] = %v, want finite", tok, h, c, x)
				}
				if reads {
					nanRows++
					require.True(t, math.IsNaN(float64(gotLSE[tok*hq+h])), "lse[%d, %d] = %v, want NaN", tok, h, gotLSE[tok*hq+h])
				}
			}
		}
		want := 1 + 2*lq[2] // the NaN row; both q heads of kv head 0, every query of sequence 2
		if causal {
			want = 1 + 2*2 // bottom-right causal: of 4 queries and 5 keys, queries 2, 3 see key 3
		}
		require.Equal(t, want, nanRows)
		_, err = conformance.CompareOutput(got, wantO, conformance.Tolerance(dt))
		require.NoError(t, err)
		require.NoError(t, conformance.CompareLSE(gotLSE, wantLSE))
	})
}

// nonFiniteKernel is one way of computing attention that the NaN/Inf tests run: a forced forward
// tier, the naive baseline or a decode tier, with the input types it takes on the engine's device.
type nonFiniteKernel struct {
	name    string
	dtypes  []memory.DType
	forward func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options) (string, error)
}

// nonFiniteKernels lists every forward tier the device runs (each forced), the naive baseline,
// and Decode at every tier it runs (one chunk, and three merged).
func nonFiniteKernels(e *attention.Engine) []nonFiniteKernel {
	var kernels []nonFiniteKernel
	for _, tier := range e.ForwardTiers() {
		kernels = append(kernels, nonFiniteKernel{tier.String(), e.TierInputs(tier),
			func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options) (string, error) {
				opts.Tier = tier
				return e.ForwardInto(ctx, o, lse, q, k, v, opts)
			}})
	}
	kernels = append(kernels, nonFiniteKernel{conformance.NaiveTier, conformance.Inputs(devices.TierScalar), e.NaiveForwardInto})
	for _, tier := range e.DecodeTiers() {
		for _, splits := range []int{1, 3} {
			kernels = append(kernels, nonFiniteKernel{fmt.Sprintf("decode-%s/splits%d", tier, splits), e.DecodeTierInputs(tier),
				func(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts attention.Options) (string, error) {
					opts.Tier = tier
					return e.DecodeInto(ctx, o, lse, q, k, v, attention.DecodeOptions{Options: opts, Splits: splits})
				}})
		}
	}
	return kernels
}

// TestForwardNonFiniteValues: two NaNs and a +Inf in V reach exactly the output elements that weigh
// them, as in the oracle (that column of the rows that see the key; a causal mask hides the key
// from some rows, which stay finite), and every finite output is within tolerance. At every kernel
// of nonFiniteKernels and input type it takes (the matrix tiers multiply V in matrices, where
// 0 * Inf would spread NaN).
func TestForwardNonFiniteValues(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	const hq, hk, d = 4, 2, 64
	lq, lk := []int{5, 7}, []int{6, 9}
	cuQ, cuK := reference.Cumulative(lq), reference.Cumulative(lk)
	nanAt := ((cuK[0]+4)*hk+1)*d + 9 // key 4 of sequence 0, kv head 1, column 9
	infAt := ((cuK[1]+6)*hk+0)*d + 3 // key 6 of sequence 1, kv head 0, column 3
	// Key 5 of sequence 1, kv head 1, column 12: in the other half of a 16-bit pair than
	// columns 9 and 3, and in the second half of an 8-value vector; under the causal mask some
	// queries that share a decode workgroup with those that see it do not.
	nan2At := ((cuK[1]+5)*hk+1)*d + 12
	forEachNonFiniteRun(t, nonFiniteKernels(e), func(t *testing.T, kern nonFiniteKernel, dt memory.DType, causal bool) {
		r := newRand(uint64(dt)*2 + 7)
		p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: cuQ, CuSeqlensK: cuK, Causal: causal,
			WindowLeft: -1, WindowRight: -1}
		qh, kh, vh := randVals(r, dt, cuQ[2]*hq*d), randVals(r, dt, cuK[2]*hk*d), randVals(r, dt, cuK[2]*hk*d)
		vh[nanAt] = float32(math.NaN())
		vh[infAt] = float32(math.Inf(1))
		vh[nan2At] = float32(math.NaN())
		wantO, _, err := reference.Forward(p, widen(qh), widen(kh), widen(vh))
		require.NoError(t, err)
		q, k, v := upload(t, e, dt, qh, cuQ[2], hq, d), upload(t, e, dt, kh, cuK[2], hk, d), upload(t, e, dt, vh, cuK[2], hk, d)
		o := newTensor(t, e, dt, cuQ[2], hq, d)
		require.NoError(t, o.Fill(ctx, conformance.Poison))
		_, err = kern.forward(ctx, o, nil, q, k, v, attention.Options{CuSeqlensQ: cuQ, CuSeqlensK: cuK, Causal: causal})
		require.NoError(t, err)
		got, err := o.Download(ctx)
		require.NoError(t, err)
		nan, inf := 0, 0
		finiteGot, finiteWant := slices.Clone(got), slices.Clone(wantO)
		for i, w := range wantO {
			g := float64(got[i])
			switch {
			case math.IsNaN(w):
				nan++
				require.True(t, math.IsNaN(g), "o[%d] = %v, want NaN", i, g)
			case math.IsInf(w, 0):
				inf++
				require.Equal(t, w, g, "o[%d]", i)
			default:
				require.False(t, math.IsNaN(g) || math.IsInf(g, 0), "o[%d] = %v, want %v", i, g, w)
				continue
			}
			finiteGot[i], finiteWant[i] = 0, 0
		}
		// Every q head of the kv head reads the key, from every query that sees it.
		wantNaN, wantInf := 2*lq[0]+2*lq[1], 2*lq[1]
		if causal { // bottom-right: query i of lq sees key j of lk when j <= i + lk - lq
			wantNaN = 2*(lq[0]-(4-(lk[0]-lq[0]))) + 2*(lq[1]-(5-(lk[1]-lq[1])))
			wantInf = 2 * (lq[1] - (6 - (lk[1] - lq[1])))
		}
		require.Equal(t, wantNaN, nan, "NaN outputs")
		require.Equal(t, wantInf, inf, "+Inf outputs")
		_, err = conformance.CompareOutput(finiteGot, finiteWant, conformance.Tolerance(dt))
		require.NoError(t, err)
	})
}

// forEachNonFiniteRun runs f as a subtest for each kernel, input type it takes, and causal or
// not, named kernel/type[/causal].
func forEachNonFiniteRun(t *testing.T, kernels []nonFiniteKernel, f func(t *testing.T, kern nonFiniteKernel, dt memory.DType, causal bool)) {
	for _, kern := range kernels {
		for _, dt := range kern.dtypes {
			for _, causal := range []bool{false, true} {
				name := kern.name + "/" + dt.String()
				if causal {
					name += "/causal"
				}
				t.Run(name, func(t *testing.T) {
					engine(t)
					f(t, kern, dt, causal)
				})
			}
		}
	}
}

// The fuzz test's and this file's random inputs, from the conformance suite's helpers.
var (
	newRand  = conformance.NewRand
	randVals = conformance.Randn
	widen    = conformance.Widen
)

// TestForwardOddRanks: Forward derives its outputs' shapes from q's; a q of the wrong rank is an
// error about q (or, for a rank-1 q's logsumexp, about the logsumexp), never a panic or a leak.
func TestForwardOddRanks(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, shape := range [][]int{{64}, {4, 64}, {1, 2, 3, 4, 64}} {
		q := newTensor(t, e, memory.F32, shape...)
		for _, withLSE := range []bool{false, true} {
			before := liveStats(e)
			res, err := e.Forward(ctx, q, q, q, attention.Options{LSE: withLSE})
			require.Nil(t, res)
			require.Error(t, err)
			if !(withLSE && len(shape) == 1) {
				require.ErrorContains(t, err, "attention: q has shape")
			}
			require.Equal(t, before, liveStats(e))
		}
	}
}
