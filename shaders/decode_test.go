package shaders

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// The decode kernels require what the forward kernel requires at the same tier, and at the
// subgroup tier subgroupShuffleXor too (decode_stream.glsl sums a key's dot product across its
// lanes with it); the merge plain compute; all three bind the attention kernels' six buffers and
// the two of the partials. The quantized decode kernels are decode.comp with quant.glsl: the same
// requirements, four more bindings.
func TestDecodeAndMergeVariants(t *testing.T) {
	for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup} {
		dec, err := ForTier(OpDecode, tier)
		require.NoError(t, err)
		fwd, err := ForTier(OpForward, tier)
		require.NoError(t, err)
		want := fwd.Requires
		if tier == devices.TierSubgroup {
			want = append(slices.Clone(want), devices.FeatureSubgroupShuffle)
		}
		require.ElementsMatch(t, want, dec.Requires, dec.Name)
		require.Equal(t, 8, dec.Bindings, dec.Name)
		require.Nil(t, dec.Inputs, "%s takes every input type", dec.Name)
		for _, op := range []Op{OpDecodeInt8, OpDecodeInt4} {
			q, err := ForTier(op, tier)
			require.NoError(t, err)
			require.ElementsMatch(t, dec.Requires, q.Requires, q.Name)
			require.Equal(t, 12, q.Bindings, q.Name)
			require.Equal(t, dec.Source, q.Source, q.Name)
			require.Contains(t, q.Defines, dec.Defines[0], q.Name)
			require.Nil(t, q.Inputs, q.Name)
		}
	}
	m, err := Lookup("merge")
	require.NoError(t, err)
	require.Equal(t, OpMerge, m.Op)
	require.Equal(t, []devices.Feature{devices.FeatureCompute}, m.Requires)
	require.Equal(t, 8, m.Bindings)
	_, err = ForTier(OpDecode, devices.TierCoopMat2)
	require.Error(t, err, "no coopmat2 decode kernel")
}

// The coopmat decode kernels are decode.comp on the forward's coopmat loop: each requires what
// the forward kernel of its matrix type requires, in the same environment, and takes that type
// only; the quantized ones take fp16 queries and four more bindings.
func TestCoopMatDecodeVariants(t *testing.T) {
	for _, c := range []struct {
		decode, forward string
		op              Op
		bindings        int
		inputs          []memory.DType
	}{
		{"decode_coopmat", "flash_fwd_coopmat", OpDecode, 8, []memory.DType{memory.F16}},
		{"decode_coopmat_bf16", "flash_fwd_coopmat_bf16", OpDecode, 8, []memory.DType{memory.BF16}},
		{"decode_int8_coopmat", "flash_fwd_coopmat", OpDecodeInt8, 12, []memory.DType{memory.F16}},
		{"decode_int4_coopmat", "flash_fwd_coopmat", OpDecodeInt4, 12, []memory.DType{memory.F16}},
	} {
		dec, err := Lookup(c.decode)
		require.NoError(t, err)
		fwd, err := Lookup(c.forward)
		require.NoError(t, err)
		require.Equal(t, c.op, dec.Op, c.decode)
		require.Equal(t, devices.TierCoopMat, dec.Tier, c.decode)
		require.ElementsMatch(t, fwd.Requires, dec.Requires, c.decode)
		require.Equal(t, fwd.Env, dec.Env, c.decode)
		require.Equal(t, c.bindings, dec.Bindings, c.decode)
		require.Equal(t, c.inputs, dec.Inputs, c.decode)
		require.Equal(t, "decode.comp", dec.Source, c.decode)
		require.Contains(t, dec.Defines, "TIER_COOPMAT", c.decode)
	}
}
