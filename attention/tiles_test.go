package attention

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// Tiles for every head dim fit each simulated device's shared memory and workgroup limits, and
// divide into whole subgroups, at every subgroup width the device may run.
func TestForwardTilesFitSimulatedDevices(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for _, sg := range []uint32{4, 8, 16, 32, 64} {
			if sg < p.MinSubgroupSize || sg > p.MaxSubgroupSize {
				continue
			}
			p.SubgroupSize = sg
			for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat} {
				if !p.Supports(tier) {
					continue
				}
				for _, d := range HeadDims {
					tl, err := forwardTiles(tier, &p, d, memory.F16)
					if tier == devices.TierCoopMat && !p.HasCoopMatShape(vk.ComponentF16, 16, 16, 16) {
						require.ErrorContains(t, err, "16x16x16", name)
						continue
					}
					require.NoError(t, err, "%s sg%d %s d%d", name, sg, tier, d)
					require.LessOrEqual(t, tl.sharedBytes(tier, uint32(d)), p.MaxSharedMemory, "%s %s d%d", name, tier, d)
					require.LessOrEqual(t, tl.WG, p.MaxWorkgroupInvocations)
					require.Positive(t, tl.BR)
					require.Positive(t, tl.BC)
					if tier == devices.TierCoopMat {
						require.Zero(t, tl.SG%16, "%s: whole rows of lanes", name)
						require.Equal(t, 16*(tl.WG/tl.SG), tl.BR, "16 rows per subgroup")
						require.Zero(t, tl.BC%16, "whole key blocks")
					}
					if tier != devices.TierScalar {
						require.Zero(t, tl.WG%tl.SG, "whole subgroups")
						require.Zero(t, tl.BR%(tl.WG/tl.SG), "rows split evenly over subgroups")
					}
				}
			}
		}
	}
}

// The automatic choice takes the fastest tier that runs the inputs, and a forced tier that cannot
// says why.
func TestSelectForward(t *testing.T) {
	sim := func(name string) *devices.Profile {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		return &p
	}
	for _, c := range []struct {
		device string
		dt     memory.DType
		d      int
		want   string
	}{
		{"nvidia-h100", memory.F16, 128, "flash_fwd_coopmat"}, // measured faster than coopmat2 there
		{"nvidia-h100", memory.F16, 256, "flash_fwd_coopmat"},
		{"nvidia-h100", memory.F32, 128, "flash_fwd_subgroup"},
		{"nvidia-h100", memory.BF16, 64, "flash_fwd_coopmat_bf16"},
		{"amd-rdna3", memory.BF16, 64, "flash_fwd_subgroup"}, // no bf16 matrices
		{"amd-rdna3", memory.F16, 80, "flash_fwd_coopmat"},
		{"intel-arc", memory.F16, 128, "flash_fwd_subgroup"}, // only 8x8x16 matrices
		{"lavapipe", memory.F16, 128, "flash_fwd_subgroup"},
		{"small-16k", memory.F16, 256, "flash_fwd_subgroup"},
	} {
		v, _, err := selectForward(sim(c.device), devices.TierAuto, c.dt, c.d)
		require.NoError(t, err, "%s %s d%d", c.device, c.dt, c.d)
		require.Equal(t, c.want, v.Name, "%s %s d%d", c.device, c.dt, c.d)
	}
	_, _, err := selectForward(sim("nvidia-h100"), devices.TierCoopMat, memory.F32, 128)
	require.ErrorContains(t, err, "does not take f32")
	_, _, err = selectForward(sim("intel-arc"), devices.TierCoopMat, memory.F16, 128)
	require.ErrorContains(t, err, "16x16x16")
	_, _, err = selectForward(sim("lavapipe"), devices.TierCoopMat, memory.F16, 128)
	require.ErrorContains(t, err, "not supported")
	_, _, err = selectForward(sim("amd-rdna3"), devices.TierCoopMat2, memory.F16, 128)
	require.ErrorContains(t, err, "not supported")
	v, _, err := selectForward(sim("nvidia-h100"), devices.TierCoopMat2, memory.BF16, 128)
	require.NoError(t, err)
	require.Equal(t, "flash_fwd_coopmat2_bf16", v.Name)
	_, _, err = selectForward(sim("nvidia-h100"), devices.TierCoopMat2, memory.F32, 128)
	require.ErrorContains(t, err, "does not take f32")
	// bf16 matrices need the feature and, at the coopmat tier, a 16x16x16 bf16 shape.
	noBF16 := sim("nvidia-h100")
	noBF16.Features.BFloat16CooperativeMatrix = false
	_, _, err = selectForward(noBF16, devices.TierCoopMat, memory.BF16, 128)
	require.ErrorContains(t, err, "bf16 cooperative matrices")
	v, _, err = selectForward(noBF16, devices.TierAuto, memory.BF16, 128)
	require.NoError(t, err)
	require.Equal(t, "flash_fwd_subgroup", v.Name)
	_, _, err = selectForward(sim("amd-rdna3"), devices.TierCoopMat, memory.BF16, 128)
	require.ErrorContains(t, err, "bf16 cooperative matrices")
	noShape := sim("nvidia-h100")
	noShape.CoopMatShapes = noShape.CoopMatShapes[:1]
	_, _, err = selectForward(noShape, devices.TierCoopMat, memory.BF16, 128)
	require.ErrorContains(t, err, "no 16x16x16 bf16")
	noFlex := sim("nvidia-h100")
	noFlex.CoopMatFlexible = slices.DeleteFunc(noFlex.CoopMatFlexible, func(f vk.CoopMatFlexible) bool { return f.A == vk.ComponentBF16 })
	_, _, err = selectForward(noFlex, devices.TierCoopMat2, memory.BF16, 128)
	require.ErrorContains(t, err, "no bf16 workgroup-scope matrices")
}

// The coopmat2 tiles follow the device's flexible granularity at the chosen workgroup size, and
// VKATTN_COOPMAT2_TILES overrides them only with tiles the device can run.
func TestCoopMat2Tiles(t *testing.T) {
	p, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	for _, c := range []struct {
		d    int
		want tiles
	}{
		{64, tiles{BR: 64, BC: 64, WG: 256, SG: 32, RW: 32}},
		{128, tiles{BR: 64, BC: 64, WG: 256, SG: 32, RW: 32}},
		{80, tiles{BR: 64, BC: 64, WG: 128, SG: 32, RW: 16}}, // 80 is no multiple of 32: 128 invocations
		{256, tiles{BR: 32, BC: 32, WG: 256, SG: 32, RW: 32}},
	} {
		got, err := forwardTiles(devices.TierCoopMat2, &p, c.d, memory.F16)
		require.NoError(t, err, "d%d", c.d)
		require.Equal(t, c.want, got, "d%d", c.d)
	}
	t.Setenv(TilesEnv, "128,64,256")
	got, err := forwardTiles(devices.TierCoopMat2, &p, 128, memory.F16)
	require.NoError(t, err)
	require.Equal(t, tiles{BR: 128, BC: 64, WG: 256, SG: 32, RW: 32}, got)
	for env, msg := range map[string]string{
		"48,64,128":  "granularity", // 48 rows: not a multiple of 32 at 128 invocations
		"64,64,96":   "no f16 workgroup-scope matrices for 96",
		"64,64,512":  "no f16 workgroup-scope matrices for 512",
		"64,2048,64": "largest matrix side",
		"64;64":      "want BR,BC,WG",
	} {
		t.Setenv(TilesEnv, env)
		_, err := forwardTiles(devices.TierCoopMat2, &p, 128, memory.F16)
		require.ErrorContains(t, err, msg, env)
	}
	t.Setenv(TilesEnv, "64,64,256")
	_, err = forwardTiles(devices.TierCoopMat2, &p, 80, memory.F16) // 80 is no multiple of 32
	require.ErrorContains(t, err, "granularity")
	q := p
	q.CoopMat2.ReservedSharedMemory = q.MaxSharedMemory
	t.Setenv(TilesEnv, "")
	_, err = forwardTiles(devices.TierCoopMat2, &q, 128, memory.F16)
	require.ErrorContains(t, err, "no shared memory")
}
