package shaders

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// The decode kernels require what the forward kernel requires at the same tier, and at the
// subgroup tier subgroupShuffleXor too (decode_stream.glsl sums a key's dot product across its
// lanes with it); the merge plain compute; all three bind the attention kernels' six buffers and
// the two of the partials, the decode kernels also the arrivals of their merge in the last
// workgroup. The quantized decode kernels are decode.comp with quant.glsl: the same
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
		require.Equal(t, 9, dec.Bindings, dec.Name)
		require.Nil(t, dec.Inputs, "%s takes every input type", dec.Name)
		for _, op := range []Op{OpDecodeInt8, OpDecodeInt4} {
			q, err := ForTier(op, tier)
			require.NoError(t, err)
			require.ElementsMatch(t, dec.Requires, q.Requires, q.Name)
			require.Equal(t, 13, q.Bindings, q.Name)
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
		{"decode_coopmat", "flash_fwd_coopmat", OpDecode, 9, []memory.DType{memory.F16}},
		{"decode_coopmat_bf16", "flash_fwd_coopmat_bf16", OpDecode, 9, []memory.DType{memory.BF16}},
		{"decode_int8_coopmat", "flash_fwd_coopmat", OpDecodeInt8, 13, []memory.DType{memory.F16}},
		{"decode_int4_coopmat", "flash_fwd_coopmat", OpDecodeInt4, 13, []memory.DType{memory.F16}},
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

// The INT8 and INT4 tensor-core decode kernels are Alternates of the coopmat tier: Best, ForTier,
// ForTierOn and ForInput pass them over, so the tier's quantized kernels stay the fp16 ones. They
// require what those require but fp16 arithmetic, and int8 matrices, which their SPIR-V shows:
// the Int8 capability, not Float16, and INT8's the StorageBuffer8BitAccess of its byte loads.
func TestIMMADecodeVariant(t *testing.T) {
	for _, c := range []struct {
		name, fp16, kv string
		op             Op
		bytes          bool
	}{
		{"decode_int8_imma", "decode_int8_coopmat", "KV_INT8", OpDecodeInt8, true},
		{"decode_int4_imma", "decode_int4_coopmat", "KV_INT4", OpDecodeInt4, false},
	} {
		v, err := Lookup(c.name)
		require.NoError(t, err)
		fp16, err := Lookup(c.fp16)
		require.NoError(t, err)
		require.True(t, v.Alternate)
		require.Equal(t, c.op, v.Op)
		require.Equal(t, devices.TierCoopMat, v.Tier)
		require.Equal(t, fp16.Bindings, v.Bindings)
		require.Equal(t, fp16.Env, v.Env)
		require.Equal(t, "decode.comp", v.Source)
		require.Equal(t, []string{"TIER_COOPMAT", c.kv, "IMMA"}, v.Defines)
		require.Nil(t, v.Inputs, "queries of every type")
		want := slices.DeleteFunc(slices.Clone(fp16.Requires), func(f devices.Feature) bool { return f == devices.FeatureFloat16 })
		require.ElementsMatch(t, append(want, devices.FeatureInt8Matrix), v.Requires)
		caps := capabilities(t, v)
		for cp, has := range map[uint32]bool{39: true, 4448: c.bytes, 6022: true, 9: false} { // Int8, StorageBuffer8BitAccess, CooperativeMatrixKHR, Float16
			require.Equal(t, has, caps[cp], "%s: capability %d", c.name, cp)
		}
		h100, err := devices.Simulated("nvidia-h100")
		require.NoError(t, err)
		require.NoError(t, v.RunsOn(&h100))
		for _, got := range []func() (*Variant, error){
			func() (*Variant, error) { return ForTier(c.op, devices.TierCoopMat) },
			func() (*Variant, error) { return ForTierOn(c.op, devices.TierCoopMat, &h100) },
			func() (*Variant, error) { return ForInput(c.op, devices.TierCoopMat, memory.F16, &h100) },
			func() (*Variant, error) { return Best(c.op, &h100, devices.TierCoopMat2) },
		} {
			w, err := got()
			require.NoError(t, err)
			require.Equal(t, c.fp16, w.Name)
		}
		_, err = ForInput(c.op, devices.TierCoopMat, memory.F32, &h100)
		require.EqualError(t, err, "shaders: tier coopmat does not take f32 inputs (it takes f16)")
		amd, err := devices.Simulated("amd-rdna3")
		require.NoError(t, err)
		require.ErrorContains(t, v.RunsOn(&amd), devices.FeatureInt8Matrix.String())
	}
}

// capabilities are the OpCapability operands of a variant's SPIR-V.
func capabilities(t *testing.T, v *Variant) map[uint32]bool {
	b, err := v.SPIRV()
	require.NoError(t, err)
	caps := map[uint32]bool{}
	for i := 5 * 4; i+4 <= len(b); { // after the header
		w := binary.LittleEndian.Uint32(b[i:])
		n := int(w >> 16)
		require.Positive(t, n, "word %d", i/4)
		if w&0xffff == 17 && n == 2 { // OpCapability
			caps[binary.LittleEndian.Uint32(b[i+4:])] = true
		}
		i += 4 * n
	}
	return caps
}
