package attention_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// TestDecodeMergeLast checks the split decode with its merge in the last workgroup of each block
// (VKATTN_DECODE_MERGE_LAST=1) against the merge dispatch, which the decode tests hold to the
// float64 oracle: outputs and logsumexps bit for bit the same, at every tier, with two subgroups
// a workgroup at the subgroup tier, and over a KV cache whose sequences lie in several buffers
// (a dispatch per buffer, side by side, each counting its arrivals apart).
// TestDecodeQuantizedMergeLast does the same for quantized K/V. A malformed setting fails the
// call, naming it.
func TestDecodeMergeLast(t *testing.T) {
	e := engine(t)
	t.Run("float", testMergeLastFloat)
	t.Run("subgroups", testMergeLastSubgroups)
	t.Run("cache", func(t *testing.T) {
		t.Setenv(attention.DecodeMergeLastEnv, "1")
		TestDecodeCache(t)
	})
	checkSettingRejected(t, e, attention.DecodeMergeLastEnv, "yes")
}

// mergeLastKernel is the kernel name a split decode reports with its merge in the kernel, given
// the name it reports with the merge dispatch.
func mergeLastKernel(t *testing.T, dispatch string) string {
	t.Helper()
	require.True(t, strings.HasSuffix(dispatch, "+merge"), dispatch)
	return strings.TrimSuffix(dispatch, "+merge") + "+lastmerge"
}

// mergeLastCall is a float decode call on random inputs, which run makes with either merge.
type mergeLastCall struct {
	e       *attention.Engine
	dt      memory.DType
	q, k, v *memory.Tensor
	opts    attention.DecodeOptions
}

// newMergeLastCall uploads random q, k and v of type dt for hq and hk heads of dim d, lq new
// tokens and lk keys per sequence (packed), with opts' other settings.
func newMergeLastCall(t *testing.T, e *attention.Engine, r *rand.Rand, dt memory.DType, hq, hk, d int, lq, lk []int, opts attention.DecodeOptions) *mergeLastCall {
	cuQ, cuK := reference.Cumulative(lq), reference.Cumulative(lk)
	nq, nk := cuQ[len(lq)], cuK[len(lk)]
	opts.LSE, opts.CuSeqlensQ, opts.CuSeqlensK = true, cuQ, cuK
	return &mergeLastCall{e: e, dt: dt, opts: opts,
		q: upload(t, e, dt, normals(r, nq*hq*d), nq, hq, d),
		k: upload(t, e, dt, normals(r, nk*hk*d), nk, hk, d),
		v: upload(t, e, dt, normals(r, nk*hk*d), nk, hk, d)}
}

// run decodes with DecodeMergeLastEnv set to mergeLast into poisoned outputs; it returns them and
// the kernels that ran.
func (c *mergeLastCall) run(t *testing.T, mergeLast string) (*attention.Result, string) {
	t.Helper()
	t.Setenv(attention.DecodeMergeLastEnv, mergeLast)
	res := newResult(t, c.e, c.dt, c.q.Shape...)
	kernel, err := c.e.DecodeInto(context.Background(), res.O, res.LSE, c.q, c.k, c.v, c.opts)
	require.NoError(t, err)
	return res, kernel
}

// testMergeLastFloat decodes shapes with many row blocks, sequences without new tokens and
// without keys, and chunk counts that leave chunks empty, at every tier, with the merge dispatch
// and with the merge in the kernel: bit-identical. The same call timed (warmup and timed runs
// recorded in one submission, the counters reset by each run's last workgroups) and run once
// more after other calls gives the same results.
func testMergeLastFloat(t *testing.T) {
	e := engine(t)
	r := conformance.NewRand(seed(t))
	for _, c := range []struct {
		hq, hk, d int
		lq, lk    []int
		splits    int
	}{
		{8, 2, 64, []int{1, 1}, []int{700, 300}, 5},
		{8, 2, 64, []int{16, 16, 16}, []int{200, 300, 100}, 5}, // more counters than the engine first makes
		{8, 2, 80, []int{3, 0, 16, 0, 2}, []int{200, 9, 517, 0, 40}, 7},
		{32, 8, 128, []int{1, 1, 1}, []int{1000, 4, 130}, 8},
	} {
		for _, tier := range e.DecodeTiers() {
			what := fmt.Sprintf("%s: hq %d hk %d d %d lq %v lk %v splits %d", tier, c.hq, c.hk, c.d, c.lq, c.lk, c.splits)
			call := newMergeLastCall(t, e, r, e.DecodeTierInputs(tier)[0], c.hq, c.hk, c.d, c.lq, c.lk,
				attention.DecodeOptions{Options: attention.Options{Causal: true, Tier: tier}, Splits: c.splits})
			want, dispatch := call.run(t, "0")
			got, kernel := call.run(t, "1")
			require.Equal(t, mergeLastKernel(t, dispatch), kernel, what)
			requireSameResult(t, what, got, want)
			timed := newResult(t, e, call.dt, call.q.Shape...)
			_, kernel, err := e.TimeDecode(context.Background(), timed.O, timed.LSE, call.q, call.k, call.v, call.opts, 2, 3)
			require.NoError(t, err, what)
			require.Equal(t, mergeLastKernel(t, dispatch), kernel, what)
			requireSameResult(t, what+", timed", timed, want)
			defer func() {
				again, _ := call.run(t, "1")
				requireSameResult(t, what+", after other calls", again, want)
			}()
		}
	}
}

// testMergeLastSubgroups: at the subgroup tier with 2 subgroups a workgroup
// (VKATTN_DECODE_SUBGROUPS), each a chunk of its own, so that a workgroup holds two chunks and
// arrives once for both, and with chunk counts that 2 does not divide (a subgroup a workgroup
// then): bit-identical to the merge dispatch.
func testMergeLastSubgroups(t *testing.T) {
	e := subgroupTierEngine(t)
	t.Setenv(attention.DecodeSubgroupsEnv, "2")
	call := newMergeLastCall(t, e, conformance.NewRand(seed(t)), e.DecodeTierInputs(devices.TierSubgroup)[0], 8, 2, 64,
		[]int{1, 1, 0}, []int{700, 90, 5}, attention.DecodeOptions{Options: attention.Options{Tier: devices.TierSubgroup}})
	for _, splits := range []int{6, 5} {
		call.opts.Splits = splits
		want, _ := call.run(t, "0")
		got, _ := call.run(t, "1")
		requireSameResult(t, fmt.Sprintf("splits %d", splits), got, want)
	}
}

// TestDecodeQuantizedMergeLast runs the quantized decode cases at d = 128 with float queries that
// split the keys (GQA and MQA, varlen, non-finite groups, V scales far apart), INT8 and INT4 at
// every tier (and on a GPU with them the tensor-core kernels, on the cases they take), with the
// merge dispatch and with the merge in the decode kernel (VKATTN_DECODE_MERGE_LAST=1):
// bit-identical.
func TestDecodeQuantizedMergeLast(t *testing.T) {
	e := engine(t)
	ran := 0
	for _, kv := range []quant.Format{quant.Int8, quant.Int4} {
		for _, tier := range e.QuantizedDecodeTiers() {
			imma := []bool{false}
			if tier == devices.TierCoopMat && immaOn(t, e, kv) {
				imma = []bool{false, true}
			}
			for _, on := range imma {
				t.Setenv(attention.DecodeIMMAEnv, map[bool]string{false: "0", true: "1"}[on])
				for _, c := range quantDecodeCases(kv, tier, on) {
					if c.Splits == 1 || c.D != 128 || c.fp8 || c.scaled {
						continue // one chunk; the others compile pipelines of their own (slow on lavapipe)
					}
					s := seed(t)
					in := c.draw(t, conformance.NewRand(s))
					run := func(mergeLast string) (*deviceInputs, string) {
						t.Setenv(attention.DecodeMergeLastEnv, mergeLast)
						d := in.upload(t, e, c)
						return d, d.run(t, e)
					}
					want, dispatch := run("0")
					if !strings.HasSuffix(dispatch, "+merge") {
						continue // one chunk: nothing to merge
					}
					got, kernel := run("1")
					what := fmt.Sprintf("%s (seed %d)", c, s)
					require.Equal(t, mergeLastKernel(t, dispatch), kernel, what)
					requireSame(t, what+": o", got.o, want.o)
					if want.lse != nil {
						requireSame(t, what+": lse", got.lse, want.lse)
					}
					ran++
				}
			}
		}
	}
	require.Positive(t, ran)
}
