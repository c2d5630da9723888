package attention_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

// TestDecodeConformance runs the conformance suite's decode cases at every tier the device runs
// Decode at, each forced, in the input types the device runs there: the split-KV decode against
// the float64 oracle, outputs poisoned. A failure prints the seed; VKATTN_SEED replays it.
func TestDecodeConformance(t *testing.T) {
	e := engine(t)
	tiers := e.DecodeTiers()
	if len(tiers) == 0 {
		t.Fatalf("%s runs no decode tier", e.Profile().Name)
	}
	for _, tier := range tiers {
		t.Run(tier.String(), func(t *testing.T) {
			takes := e.DecodeTierInputs(tier)
			require.NotEmpty(t, takes)
			for _, c := range conformance.DecodeCases(tier) {
				if !slices.Contains(takes, c.DType) {
					t.Logf("%s: %s does not run %s inputs at this tier", c, e.Profile().Name, c.DType)
					continue
				}
				t.Run(c.String(), func(t *testing.T) {
					engine(t)
					o := conformance.Run(context.Background(), e, c, seed(t))
					if !o.Passed() {
						t.Fatalf("%s kernel %s: %s", c, o.Kernel, o.Error)
					}
				})
			}
		})
	}
}

// subgroupTierCases are decode cases for the subgroup tier's tuning settings: the H100 decode
// shape, varlen with an empty sequence and causal rows, and bf16 with 16 new tokens.
var subgroupTierCases = []conformance.Case{
	{DType: memory.F16, D: 128, Hq: 32, Hk: 8, Lq: []int{1}, Lk: []int{1000}, Batch: 2},
	{DType: memory.F32, D: 64, Hq: 8, Hk: 2, Varlen: true, Lq: []int{3, 0, 1}, Lk: []int{200, 9, 37}, Causal: true},
	{DType: memory.BF16, D: 128, Hq: 4, Hk: 1, Lq: []int{16}, Lk: []int{299}, Causal: true},
}

// checkSubgroupTierSetting runs subgroupTierCases at the subgroup tier, each with every chunk
// count of splits, against the float64 oracle (outputs poisoned), under the environment the
// caller set; what names that setting in a failure.
func checkSubgroupTierSetting(t *testing.T, e *attention.Engine, what string, splits []int) {
	t.Helper()
	takes := e.DecodeTierInputs(devices.TierSubgroup)
	ran := 0
	for _, c := range subgroupTierCases {
		if !slices.Contains(takes, c.DType) {
			continue
		}
		c.Tier, c.Decode = devices.TierSubgroup, true
		for _, n := range splits {
			c.Splits = n
			o := conformance.Run(context.Background(), e, c, seed(t))
			if !o.Passed() {
				t.Fatalf("%s, %s, kernel %s: %s", c, what, o.Kernel, o.Error)
			}
			ran++
		}
	}
	require.Positive(t, ran)
}

// checkSettingRejected sets env to bad: a decode call at the subgroup tier, or at the automatic
// one, fails naming env.
func checkSettingRejected(t *testing.T, e *attention.Engine, env, bad string) {
	t.Helper()
	dt := e.DecodeTierInputs(devices.TierSubgroup)[0]
	t.Setenv(env, bad)
	for _, tier := range []devices.Tier{devices.TierSubgroup, devices.TierAuto} {
		c := subgroupTierCases[0]
		c.DType, c.Tier, c.Decode = dt, tier, true
		o := conformance.Run(context.Background(), e, c, seed(t))
		require.False(t, o.Passed(), "tier %s", tier)
		require.Contains(t, o.Error, env, "tier %s", tier)
	}
}

// subgroupTierEngine is the shared engine, where it runs the subgroup decode tier.
func subgroupTierEngine(t *testing.T) *attention.Engine {
	e := engine(t)
	if !slices.Contains(e.DecodeTiers(), devices.TierSubgroup) {
		testenv.Lacks(t, fmt.Errorf("%s runs no subgroup decode tier", e.Profile().Name))
	}
	return e
}

// TestDecodeSubgroupsPerWorkgroup runs the subgroup tier with 4 subgroups a workgroup
// (VKATTN_DECODE_SUBGROUPS), each a chunk of its own, and with chunk counts that 4 does not
// divide (the workgroups then hold 2 or 1); a malformed setting fails the call, naming it.
func TestDecodeSubgroupsPerWorkgroup(t *testing.T) {
	e := subgroupTierEngine(t)
	t.Setenv(attention.DecodeSubgroupsEnv, "4")
	checkSubgroupTierSetting(t, e, "4 subgroups a workgroup", []int{0, 8, 6, 3})
	checkSettingRejected(t, e, attention.DecodeSubgroupsEnv, "3")
}

// TestDecodeContiguousChunks runs the subgroup tier with chunks that are ranges of keys
// (VKATTN_DECODE_CONTIGUOUS=1), alone and with 4 subgroups a workgroup, over chunk counts that
// split the keys unevenly; a malformed setting fails the call, naming it.
func TestDecodeContiguousChunks(t *testing.T) {
	e := subgroupTierEngine(t)
	t.Setenv(attention.DecodeContiguousEnv, "1")
	for _, n := range []string{"1", "4"} {
		t.Setenv(attention.DecodeSubgroupsEnv, n)
		checkSubgroupTierSetting(t, e, "contiguous chunks, "+n+" subgroups a workgroup", []int{0, 8, 7, 1})
	}
	checkSettingRejected(t, e, attention.DecodeContiguousEnv, "yes")
}

// TestDecodePrefetch runs the subgroup tier with each step's loads issued a step ahead
// (VKATTN_DECODE_PREFETCH=1), alone, with 4 subgroups a workgroup and with contiguous chunks,
// over chunk counts that leave chunks of one step and none; a malformed setting fails the call.
func TestDecodePrefetch(t *testing.T) {
	e := subgroupTierEngine(t)
	t.Setenv(attention.DecodePrefetchEnv, "1")
	checkSubgroupTierSetting(t, e, "loads a step ahead", []int{0, 8, 7, 1, 64})
	t.Setenv(attention.DecodeSubgroupsEnv, "4")
	t.Setenv(attention.DecodeContiguousEnv, "1")
	checkSubgroupTierSetting(t, e, "loads a step ahead, 4 subgroups, contiguous chunks", []int{0, 5})
	t.Setenv(attention.DecodeSubgroupsEnv, "")
	t.Setenv(attention.DecodeContiguousEnv, "")
	checkSettingRejected(t, e, attention.DecodePrefetchEnv, "on")
}

// TestDecodeBadInputs: a malformed decode call returns an error naming the offending argument,
// dispatches nothing (the poisoned outputs are untouched) and leaks nothing, through DecodeInto,
// TimeDecode and, where o is q-shaped, Decode. Decode shares Forward's validation
// (TestForwardBadInputs has every case of it); here are a few of those, and what is Decode's own.
func TestDecodeBadInputs(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	const f32 = memory.F32
	q := newTensor(t, e, f32, 2, 3, 4, 64)
	k := newTensor(t, e, f32, 2, 40, 2, 64)
	v := newTensor(t, e, f32, 2, 40, 2, 64)
	o := newTensor(t, e, f32, 2, 3, 4, 64)
	lse := newTensor(t, e, f32, 2, 3, 4)
	q17, o17 := newTensor(t, e, f32, 2, 17, 4, 64), newTensor(t, e, f32, 2, 17, 4, 64)
	qv, ov := newTensor(t, e, f32, 20, 4, 64), newTensor(t, e, f32, 20, 4, 64)
	kv, vv := newTensor(t, e, f32, 80, 2, 64), newTensor(t, e, f32, 80, 2, 64)
	for _, x := range []*memory.Tensor{q, k, v, q17, qv, kv, vv} {
		require.NoError(t, x.Fill(ctx, 0x3c003c00))
	}
	outs := []*memory.Tensor{o, lse, o17, ov}
	// A valid call first, split, so that the engine holds what it keeps between calls.
	kernel, err := e.DecodeInto(ctx, o, lse, q, k, v, attention.DecodeOptions{Splits: 3})
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(kernel, "+merge"), kernel)
	for _, x := range outs {
		require.NoError(t, x.Fill(ctx, conformance.Poison))
	}
	huge := int(e.Profile().MaxStorageBufferRange)/(4*2*3*4*64) + 1
	cases := []struct {
		name          string
		o, lse        *memory.Tensor
		q, k, v       *memory.Tensor
		opts          attention.DecodeOptions
		want          string
		defaultOutput bool // Decode can run it (o is q-shaped, lse is the valid one or none)
	}{
		{"nil k", o, lse, q, nil, v, attention.DecodeOptions{}, "attention: k is nil", true},
		{"nil q", o, lse, nil, k, v, attention.DecodeOptions{}, "attention: q is nil", true},
		{"shape o", o17, nil, q, k, v, attention.DecodeOptions{}, "attention: o has shape [2 17 4 64], want q's [2 3 4 64]", false},
		{"lse over o", o, view(t, o, []int{2, 3, 4}, []int{12, 4, 1}, 0), q, k, v, attention.DecodeOptions{}, "attention: lse overlaps o", false},
		{"window", o, lse, q, k, v, attention.DecodeOptions{Options: attention.Options{Window: &attention.Window{Left: -3}}}, "attention: Options.Window bounds must be >= -1", true},
		{"17 tokens", o17, nil, q17, k, v, attention.DecodeOptions{}, "attention: q: Decode takes 1 to 16 query tokens per sequence, got 17", true},
		{"17 tokens varlen", ov, nil, qv, kv, vv, attention.DecodeOptions{Options: attention.Options{CuSeqlensQ: []int{0, 3, 20}, CuSeqlensK: []int{0, 40, 80}}},
			"attention: q: Decode takes 1 to 16 query tokens per sequence, got 17 in sequence 1", true},
		{"varlen offsets", ov, nil, qv, kv, vv, attention.DecodeOptions{Options: attention.Options{CuSeqlensQ: []int{0, 3, 21}, CuSeqlensK: []int{0, 40, 80}}},
			"attention: CuSeqlensQ[2] = 21 is past the 20 tokens of q", true},
		{"splits negative", o, lse, q, k, v, attention.DecodeOptions{Splits: -1}, "attention: DecodeOptions.Splits must be >= 0, got -1", true},
		{"splits over range", o, lse, q, k, v, attention.DecodeOptions{Splits: huge}, "exceed the device's maxStorageBufferRange", true},
		{"tier coopmat", o, lse, q, k, v, attention.DecodeOptions{Options: attention.Options{Tier: devices.TierCoopMat}}, "tier coopmat", true},
		{"tier", o, lse, q, k, v, attention.DecodeOptions{Options: attention.Options{Tier: devices.Tier(99)}}, "attention: tier", true},
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
			_, err := e.DecodeInto(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts)
			check("DecodeInto", err)
			_, _, err = e.TimeDecode(ctx, c.o, c.lse, c.q, c.k, c.v, c.opts, 1, 2)
			check("TimeDecode", err)
			if c.defaultOutput {
				for _, withLSE := range []bool{false, true} {
					opts := c.opts
					opts.LSE = withLSE
					res, err := e.Decode(ctx, c.q, c.k, c.v, opts)
					require.Nil(t, res)
					check("Decode", err)
				}
			}
			requireUnwritten(t, outs...)
		})
	}
}

// TestMergeBadInputs: a malformed merge returns an error naming the offending argument,
// dispatches nothing and leaks nothing, through MergeInto and, where o is the default, Merge.
func TestMergeBadInputs(t *testing.T) {
	e := engine(t)
	e2 := secondEngine(t)
	ctx := context.Background()
	const f32, f16 = memory.F32, memory.F16
	po := newTensor(t, e, f32, 3, 5, 4, 64) // 3 partials of [5 tokens, 4 heads, 64]
	pl := newTensor(t, e, f32, 3, 5, 4)
	o := newTensor(t, e, f32, 5, 4, 64)
	lse := newTensor(t, e, f32, 5, 4)
	require.NoError(t, po.Fill(ctx, 0x3f800000))
	require.NoError(t, pl.Fill(ctx, 0))
	_, err := e.MergeInto(ctx, o, lse, po, pl)
	require.NoError(t, err)
	outs := []*memory.Tensor{o, lse}
	for _, x := range outs {
		require.NoError(t, x.Fill(ctx, conformance.Poison))
	}
	closed := newTensor(t, e, f32, 3, 5, 4, 64)
	closed.Close()
	foreign, err := e2.NewTensor(f32, 3, 5, 4)
	require.NoError(t, err)
	defer foreign.Close()
	big := newTensor(t, e, f32, 3, 5, 4, 128)
	shared := newTensor(t, e, f32, 3*5*4*64+5*4*64)
	cases := []struct {
		name          string
		o, lse        *memory.Tensor
		po, pl        *memory.Tensor
		want          string
		defaultOutput bool
	}{
		{"nil partO", o, lse, nil, pl, "attention: partO is nil", true},
		{"nil partLSE", o, lse, po, nil, "attention: partLSE is nil", true},
		{"nil o", nil, lse, po, pl, "attention: o is nil", false},
		{"closed partO", o, lse, closed, pl, "attention: partO: memory: closed", true},
		{"foreign partLSE", o, lse, po, foreign, "attention: partLSE: memory: tensor belongs to another allocator", true},
		{"partO f16", o, lse, newTensor(t, e, f16, 3, 5, 4, 64), pl, "attention: partO must be a contiguous f32 tensor, got f16", true},
		{"partO strided", o, lse, view(t, big, []int{3, 5, 4, 64}, []int{2560, 512, 128, 1}, 0), pl, "attention: partO must be a contiguous f32 tensor", true},
		{"partO shape", o, lse, newTensor(t, e, f32, 3, 5, 2, 64), pl, "attention: partO has shape [3 5 2 64], want [S] followed by o's shape [5 4 64]", false},
		{"partLSE shape", o, lse, po, newTensor(t, e, f32, 2, 5, 4), "attention: partLSE has shape [2 5 4], want [3 5 4]", true},
		{"o rank", newTensor(t, e, f32, 20, 64), nil, po, pl, "attention: o has shape [20 64], want", false},
		{"head dim 48", newTensor(t, e, f32, 5, 4, 48), nil, newTensor(t, e, f32, 3, 5, 4, 48), pl, "attention: o: head dim 48 is not supported", false},
		{"o 16-bit odd offset", view(t, newTensor(t, e, f16, 5*4*64+1), []int{5, 4, 64}, []int{256, 64, 1}, 1), nil, po, pl, "attention: o: 16-bit tensors need even offsets and strides", false},
		{"lse shape", o, newTensor(t, e, f32, 5, 3), po, pl, "attention: lse must be a contiguous f32 tensor of shape [5 4]", false},
		{"o over partO", view(t, shared, []int{5, 4, 64}, []int{256, 64, 1}, 3*5*4*64-1), nil,
			view(t, shared, []int{3, 5, 4, 64}, []int{1280, 256, 64, 1}, 0), pl, "attention: o overlaps partO", false},
		{"lse is partLSE", o, view(t, pl, []int{5, 4}, []int{4, 1}, 0), po, pl, "attention: lse overlaps partLSE", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			engine(t)
			before := liveStats(e)
			_, err := e.MergeInto(ctx, c.o, c.lse, c.po, c.pl)
			require.ErrorContains(t, err, c.want)
			require.Equal(t, before, liveStats(e), "MergeInto leaked")
			if c.defaultOutput {
				res, err := e.Merge(ctx, c.po, c.pl)
				require.Nil(t, res)
				require.ErrorContains(t, err, c.want)
				require.Equal(t, before, liveStats(e), "Merge leaked")
			}
			requireUnwritten(t, outs...)
		})
	}
	// A partO of rank 1 has no partial to take the output's shape from.
	res, err := e.Merge(ctx, newTensor(t, e, f32, 64), pl)
	require.Nil(t, res)
	require.ErrorContains(t, err, "attention: partO has shape [64], want")
	// A closed engine refuses everything.
	e3 := secondEngine(t)
	e3.Close()
	_, err = e3.Merge(ctx, po, pl)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e3.MergeInto(ctx, o, lse, po, pl)
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e3.Decode(ctx, po, po, po, attention.DecodeOptions{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, err = e3.DecodeInto(ctx, o, lse, po, po, po, attention.DecodeOptions{})
	require.ErrorIs(t, err, attention.ErrClosed)
	_, _, err = e3.TimeDecode(ctx, o, lse, po, po, po, attention.DecodeOptions{}, 0, 1)
	require.ErrorIs(t, err, attention.ErrClosed)
}

// TestDecodeTime: TimeDecode returns one positive device time per iteration, for both
// dispatches of a split decode. A device without timestamps skips it, or fails it where a device
// is required (VKATTN_REQUIRE_DEVICE=1).
func TestDecodeTime(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	q, err := e.Upload(ctx, memory.F16, make([]float32, 2*1*8*64), 2, 1, 8, 64)
	require.NoError(t, err)
	defer q.Close()
	k, err := e.Upload(ctx, memory.F16, make([]float32, 2*300*2*64), 2, 300, 2, 64)
	require.NoError(t, err)
	defer k.Close()
	o, err := e.NewTensor(memory.F16, 2, 1, 8, 64)
	require.NoError(t, err)
	defer o.Close()
	for _, splits := range []int{1, 4} {
		times, kernel, err := e.TimeDecode(ctx, o, nil, q, k, k, attention.DecodeOptions{Splits: splits}, 1, 3)
		if err != nil && strings.Contains(err.Error(), "no timestamps") {
			testenv.Lacks(t, err)
		}
		require.NoError(t, err)
		require.Equal(t, splits > 1, strings.HasSuffix(kernel, "+merge"), kernel)
		require.True(t, strings.HasPrefix(kernel, "decode_"), kernel)
		require.Len(t, times, 3)
		for _, d := range times {
			require.Positive(t, d)
		}
	}
}
