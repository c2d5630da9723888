package attention

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// The INT8 tensor-core kernel runs on the simulated H100 (its driver's s8 16x16x32 shape, int8
// arithmetic and 8-bit storage) for up to 16 rows at head dims that are multiples of 32 up to
// 128, in workgroups of one 32-lane subgroup, 16 rows and 32-key tiles, within shared memory;
// nowhere without the shape (a saturating one does not count) or either feature, or without 32-lane
// subgroups.
func TestIMMATiles(t *testing.T) {
	h100, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	for _, d := range HeadDims {
		for _, rows := range []int{1, 4, 16, 17, 64} {
			v, tl, err := immaTiles(&h100, d, rows)
			if d%32 != 0 || d > 128 || rows > 16 {
				require.Error(t, err, "d %d rows %d", d, rows)
				continue
			}
			require.NoError(t, err, "d %d rows %d", d, rows)
			require.Equal(t, immaKernel, v.Name)
			require.Equal(t, tiles{BR: 16, BC: 32, WG: 32, SG: 32}, tl)
			require.LessOrEqual(t, immaShared(uint32(d)), h100.MaxSharedMemory)
		}
	}
	// The shared memory decode_imma.glsl declares at d = 128: codes 2 x 32 x 9 units, scores and
	// probabilities 16 x 9 each, probability codes 2 x 16 x 3, factors 2 x 16 x 4, an O block
	// 16 x 5 (16-byte units), and 64 scales.
	require.Equal(t, uint32((2*32*9+2*16*9+2*16*3+2*16*4+16*5)*16+64*4), immaShared(128))
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
		_, _, err := immaTiles(&p, 128, 4)
		require.Error(t, err, "without %s", what)
	}
	// A subgroup width that size control pins to 32 (the size pinned).
	p := h100
	p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 64, 32, 64
	_, tl, err := immaTiles(&p, 128, 4)
	require.NoError(t, err)
	require.True(t, tl.PinSubgroup)
	for _, name := range []string{"amd-rdna3", "intel-arc", "small-16k", "lavapipe"} {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		_, _, err = immaTiles(&p, 128, 4)
		require.Error(t, err, name)
	}
}

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

// Where the call lets it, the INT8 tensor-core kernel comes first, automatically whatever the
// order and at a forced coopmat tier, on a device that runs it; elsewhere (another forced tier,
// a call it does not fit, INT4, a device without it) the choice is the one before it.
func TestIMMASelection(t *testing.T) {
	h100, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	lp, err := devices.Simulated("lavapipe")
	require.NoError(t, err)
	int8 := decodeKernel{op: shaders.OpDecodeInt8, dt: memory.F32}
	for _, c := range []struct {
		p    *devices.Profile
		op   shaders.Op
		tier devices.Tier
		dt   memory.DType
		d    int
		rows int
		imma bool
		want string
	}{
		{&h100, shaders.OpDecodeInt8, devices.TierAuto, memory.F32, 128, 4, true, immaKernel},
		{&h100, shaders.OpDecodeInt8, devices.TierAuto, memory.BF16, 128, 16, true, immaKernel},
		{&h100, shaders.OpDecodeInt8, devices.TierCoopMat, memory.F16, 256, 4, true, "decode_int8_coopmat"},
		{&h100, shaders.OpDecodeInt8, devices.TierCoopMat, memory.F32, 64, 8, true, immaKernel},
		{&h100, shaders.OpDecodeInt8, devices.TierAuto, memory.F32, 128, 4, false, "decode_int8_subgroup"},
		{&h100, shaders.OpDecodeInt8, devices.TierSubgroup, memory.F32, 128, 4, true, "decode_int8_subgroup"},
		{&h100, shaders.OpDecodeInt8, devices.TierCoopMat, memory.F16, 80, 4, true, "decode_int8_coopmat"},
		{&h100, shaders.OpDecodeInt8, devices.TierCoopMat, memory.F16, 128, 64, true, "decode_int8_coopmat"},
		{&h100, shaders.OpDecodeInt8, devices.TierAuto, memory.F16, 128, 64, true, "decode_int8_coopmat"},
		{&lp, shaders.OpDecodeInt8, devices.TierAuto, memory.F32, 128, 4, true, "decode_int8_subgroup"},
	} {
		v, _, _, err := selectDecode(c.p, c.op, c.tier, decodeOrder(int8, c.rows, false), c.dt, c.d, c.rows, decodeTuning{}, c.imma)
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, v.Name, "%s %s %s d %d rows %d imma %v", c.p.Name, c.tier, c.dt, c.d, c.rows, c.imma)
	}
	// AutoDecode assumes dense aligned K and V: one new token of GQA 4 takes the kernel for INT8
	// where DecodeIMMAEnv is 1, not for INT4, nor where it is 0 or unset.
	for _, c := range []struct {
		op   shaders.Op
		env  string
		tier devices.Tier
		want string
	}{
		{shaders.OpDecodeInt8, "1", devices.TierCoopMat, immaKernel},
		{shaders.OpDecodeInt8, "0", devices.TierSubgroup, "decode_int8_subgroup"},
		{shaders.OpDecodeInt8, "", devices.TierSubgroup, "decode_int8_subgroup"},
		{shaders.OpDecodeInt4, "1", devices.TierSubgroup, "decode_int4_subgroup"},
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
}
