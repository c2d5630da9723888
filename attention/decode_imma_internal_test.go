package attention

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// The INT8 and INT4 tensor-core kernels run on the simulated H100 (its driver's s8 16x16x32
// shape, int8 arithmetic and 8-bit storage) for up to 16 rows at head dims that are multiples of
// 32 up to 128 (where INT4 has one scale group a row), in workgroups of one 32-lane subgroup,
// 16 rows and 32-key tiles, within shared memory; nowhere without the shape (a saturating one
// does not count) or either feature, or without 32-lane subgroups. INT4 of two groups a row
// (d = 256) is refused for its groups; the float decode has no such kernel.
func TestIMMATiles(t *testing.T) {
	h100, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	for op, name := range map[shaders.Op]string{shaders.OpDecodeInt8: "decode_int8_imma", shaders.OpDecodeInt4: "decode_int4_imma"} {
		for _, d := range HeadDims {
			for _, rows := range []int{1, 4, 16, 17, 64} {
				v, tl, err := immaTiles(&h100, op, d, rows)
				if d%32 != 0 || d > 128 || rows > 16 {
					require.Error(t, err, "%s d %d rows %d", op, d, rows)
					continue
				}
				require.NoError(t, err, "%s d %d rows %d", op, d, rows)
				require.Equal(t, name, v.Name)
				require.Equal(t, op, v.Op)
				require.Equal(t, tiles{BR: 16, BC: 32, WG: 32, SG: 32}, tl)
				require.LessOrEqual(t, immaShared(uint32(d)), h100.MaxSharedMemory)
			}
		}
	}
	_, _, err = immaTiles(&h100, shaders.OpDecodeInt4, 256, 4)
	require.ErrorContains(t, err, "decode_int4_imma takes int4 K and V of one scale group per row; at head dim 256 they have 2 groups of 128 channels")
	_, _, err = immaTiles(&h100, shaders.OpDecode, 128, 4)
	require.Error(t, err)
	// The shared memory decode_imma.glsl declares at d = 128: codes 2 x 32 x 9 units, scores and
	// probabilities 16 x 9 each, probability codes 2 x 16 x 3, factors 2 x 16 x 4, an O block
	// 16 x 5 (16-byte units), and 64 scales.
	require.Equal(t, uint32((2*32*9+2*16*9+2*16*3+2*16*4+16*5)*16+64*4+decodeMergeShared), immaShared(128))
	without := map[string]func(p *devices.Profile){
		"shaderInt8":            func(p *devices.Profile) { p.Features.ShaderInt8 = false },
		"8-bit storage":         func(p *devices.Profile) { p.Features.StorageBuffer8Bit = false },
		"cooperative matrices":  func(p *devices.Profile) { p.Features.CooperativeMatrix = false },
		"the s8 shape":          func(p *devices.Profile) { p.CoopMatShapes = p.CoopMatShapes[:2] },
		"32-lane subgroups":     func(p *devices.Profile) { p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 64, 64, 64 },
		"non-saturating shapes": func(p *devices.Profile) { setSaturating(p) },
	}
	for what, f := range without {
		p := h100
		p.CoopMatShapes = append([]vk.CoopMatShape(nil), h100.CoopMatShapes...)
		f(&p)
		for _, op := range decodeOps {
			_, _, err := immaTiles(&p, op, 128, 4)
			require.Error(t, err, "%s without %s", op, what)
		}
	}
	// A subgroup width that size control pins to 32 (the size pinned).
	p := h100
	p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 64, 32, 64
	_, tl, err := immaTiles(&p, shaders.OpDecodeInt4, 128, 4)
	require.NoError(t, err)
	require.True(t, tl.PinSubgroup)
	for _, name := range []string{"amd-rdna3", "intel-arc", "small-16k", "lavapipe"} {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		_, _, err = immaTiles(&p, shaders.OpDecodeInt8, 128, 4)
		require.Error(t, err, name)
	}
}

// The tensor-core kernels' names.
const int8Kernel, int4Kernel = "decode_int8_imma", "decode_int4_imma"

// setSaturating marks the device's s8 shapes saturating.
func setSaturating(p *devices.Profile) {
	for i := range p.CoopMatShapes {
		if p.CoopMatShapes[i].A == vk.ComponentS8 {
			p.CoopMatShapes[i].Saturating = true
		}
	}
}

// K and V suit the kernel's matrix loads where every offset and stride is a whole number of
// 16-byte units (4 words).
func TestIMMAPlaced(t *testing.T) {
	ok := kvPlacement{kTokenStride: 64, kHeadStride: 32, vTokenStride: 64, vHeadStride: 32, kOff: 4096, vOff: 8}
	require.True(t, immaPlaced(ok))
	for i, field := range placementFields {
		bad := ok
		*field(&bad) += 2
		require.False(t, immaPlaced(bad), "field %d: %+v", i, bad)
	}
}

// Where the call lets it, the INT8 or INT4 tensor-core kernel comes first, automatically whatever
// the order and at a forced coopmat tier, on a device that runs it; elsewhere (another forced
// tier, a call it does not fit, a device without it) the choice is the one before it.
func TestIMMASelection(t *testing.T) {
	h100, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	lp, err := devices.Simulated("lavapipe")
	require.NoError(t, err)
	// Each row for INT8 and INT4, want the kernel's suffix: decode_int8_<want>, decode_int4_<want>.
	for _, c := range []struct {
		p    *devices.Profile
		tier devices.Tier
		dt   memory.DType
		d    int
		rows int
		imma bool
		want string
	}{
		{&h100, devices.TierAuto, memory.F32, 128, 4, true, "imma"},
		{&h100, devices.TierAuto, memory.BF16, 128, 16, true, "imma"},
		{&h100, devices.TierAuto, memory.F16, 64, 16, true, "imma"},
		{&h100, devices.TierCoopMat, memory.F16, 256, 4, true, "coopmat"},
		{&h100, devices.TierCoopMat, memory.F32, 64, 8, true, "imma"},
		{&h100, devices.TierCoopMat, memory.F32, 96, 8, true, "imma"},
		{&h100, devices.TierAuto, memory.F32, 128, 4, false, "subgroup"},
		{&h100, devices.TierSubgroup, memory.F32, 128, 4, true, "subgroup"},
		{&h100, devices.TierCoopMat, memory.F16, 80, 4, true, "coopmat"},
		{&h100, devices.TierCoopMat, memory.F16, 128, 64, true, "coopmat"},
		{&h100, devices.TierAuto, memory.F16, 128, 64, true, "coopmat"},
		{&lp, devices.TierAuto, memory.F32, 128, 4, true, "subgroup"},
	} {
		for op, kv := range map[shaders.Op]string{shaders.OpDecodeInt8: "int8", shaders.OpDecodeInt4: "int4"} {
			kern := decodeKernel{op: op, dt: memory.F32}
			v, _, _, err := selectDecode(c.p, op, c.tier, decodeOrder(kern, c.rows, false), c.dt, c.d, c.rows, decodeTuning{}, c.imma)
			require.NoError(t, err, "%s %+v", op, c)
			require.Equal(t, "decode_"+kv+"_"+c.want, v.Name, "%s %s %s %s d %d rows %d imma %v", op, c.p.Name, c.tier, c.dt, c.d, c.rows, c.imma)
		}
	}
	// AutoDecode assumes dense aligned K and V: one new token of GQA 4 takes the kernels for INT8
	// and INT4 where DecodeIMMAEnv is 1, not where it is 0 or unset; the float decode has none.
	for _, c := range []struct {
		op   shaders.Op
		env  string
		tier devices.Tier
		want string
	}{
		{shaders.OpDecodeInt8, "1", devices.TierCoopMat, int8Kernel},
		{shaders.OpDecodeInt8, "0", devices.TierSubgroup, "decode_int8_subgroup"},
		{shaders.OpDecodeInt8, "", devices.TierSubgroup, "decode_int8_subgroup"},
		{shaders.OpDecodeInt4, "1", devices.TierCoopMat, int4Kernel},
		{shaders.OpDecodeInt4, "0", devices.TierSubgroup, "decode_int4_subgroup"},
		{shaders.OpDecode, "1", devices.TierSubgroup, "decode_subgroup"},
	} {
		t.Setenv(DecodeIMMAEnv, c.env)
		tier, kernel, err := AutoDecode(&h100, c.op, memory.F16, 128, 4)
		require.NoError(t, err)
		require.Equal(t, [2]string{c.tier.String(), c.want}, [2]string{tier.String(), kernel}, "%s %q", c.op, c.env)
	}
	// The tier listings are those of the kernels that take every call.
	require.Equal(t, []memory.DType{memory.F16}, QuantizedDecodeInputs(devices.TierCoopMat))
	require.Equal(t, []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat}, DecodeOpTiersOn(&h100, shaders.OpDecodeInt8))
	require.Equal(t, []devices.Tier{devices.TierScalar, devices.TierSubgroup}, DecodeOpTiersOn(&lp, shaders.OpDecodeInt8))
	require.Equal(t, []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat}, DecodeOpTiersOn(&h100, shaders.OpDecodeInt4))
}
