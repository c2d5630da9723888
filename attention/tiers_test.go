package attention

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// tierProfiles are the simulated devices and variants of them that the features alone would put
// at the coopmat tier although its tiles cannot run there.
func tierProfiles(t *testing.T) map[string]*devices.Profile {
	out := map[string]*devices.Profile{}
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		out[name] = &p
	}
	// Cooperative matrices of 16x16x16 but subgroups of 8 lanes that cannot be widened.
	narrow, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	narrow.SubgroupSize, narrow.MinSubgroupSize, narrow.MaxSubgroupSize = 8, 8, 8
	out["h100-sg8"] = &narrow
	// Only 8x8x16 fp16 shapes and a bf16 16x16x16 one.
	bf16Only, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	bf16Only.CoopMatShapes = []vk.CoopMatShape{
		{M: 8, N: 8, K: 16, A: vk.ComponentF16, B: vk.ComponentF16, C: vk.ComponentF32, Result: vk.ComponentF32, SubgroupScope: true},
		{M: 16, N: 16, K: 16, A: vk.ComponentBF16, B: vk.ComponentBF16, C: vk.ComponentF32, Result: vk.ComponentF32, SubgroupScope: true},
	}
	out["h100-no-f16-16x16x16"] = &bf16Only
	// bf16 workgroup-scope matrices of depth granularity 32, fp16 ones as the H100's: coopmat2
	// runs fp16 at every head dim and bf16 at all but 80.
	k32, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	k32.CoopMatFlexible = slices.Clone(k32.CoopMatFlexible)
	for i := range k32.CoopMatFlexible {
		if k32.CoopMatFlexible[i].A == vk.ComponentBF16 {
			k32.CoopMatFlexible[i].K = 32
		}
	}
	out["h100-bf16-k32"] = &k32
	return out
}

// ForwardSupport lists exactly what selectForward accepts: a tier, input type and head dim are
// listed together if and only if a forced call with them is accepted.
func TestForwardSupportMatchesSelectForward(t *testing.T) {
	for name, p := range tierProfiles(t) {
		support := ForwardSupport(p)
		require.NotEmpty(t, support, name)
		require.Equal(t, devices.TierScalar, support[0].Tier, "%s: every device runs the scalar tier", name)
		for _, tier := range devices.Tiers {
			i := slices.IndexFunc(support, func(s TierSupport) bool { return s.Tier == tier })
			for _, dt := range ForwardDTypes {
				for _, d := range HeadDims {
					_, _, err := selectForward(p, tier, dt, d)
					listed := i >= 0 && slices.Contains(support[i].Inputs, dt) && slices.Contains(support[i].InputHeadDims[dt], d)
					if listed {
						require.Contains(t, support[i].HeadDims, d, "%s %s", name, tier)
					}
					require.Equal(t, err == nil, listed, "%s %s %s d%d: %v", name, tier, dt, d, err)
				}
			}
		}
		require.Equal(t, ForwardTiersOn(p), tiersOf(support), name)
	}
}

func tiersOf(s []TierSupport) []devices.Tier {
	var out []devices.Tier
	for _, x := range s {
		out = append(out, x.Tier)
	}
	return out
}

// A matrix tier is listed only where its tiles run (16x16x16 matrices of the input type and
// subgroups of 16 lanes or more for coopmat), and then for the input types whose matrices the
// device offers (fp16, bf16), although the features alone would admit more.
func TestForwardTiersOnSimulatedDevices(t *testing.T) {
	ps := tierProfiles(t)
	all := []memory.DType{memory.F32, memory.F16, memory.BF16}
	half := []memory.DType{memory.F16, memory.BF16}
	type inputs map[devices.Tier][]memory.DType
	want := map[string]inputs{
		"nvidia-h100": {devices.TierScalar: all, devices.TierSubgroup: all, devices.TierCoopMat: half, devices.TierCoopMat2: half},
		"amd-rdna3":   {devices.TierScalar: all, devices.TierSubgroup: all, devices.TierCoopMat: {memory.F16}},
		"intel-arc":   {devices.TierScalar: all, devices.TierSubgroup: all},
		"small-16k":   {devices.TierScalar: all, devices.TierSubgroup: all},
		"lavapipe":    {devices.TierScalar: all, devices.TierSubgroup: all},
		// Workgroup-scope matrices assume no subgroup width.
		"h100-sg8": {devices.TierScalar: all, devices.TierSubgroup: all, devices.TierCoopMat2: half},
		// Flexible sizes need no fixed shape; the coopmat tier runs bf16 on its 16x16x16 shape.
		"h100-no-f16-16x16x16": {devices.TierScalar: all, devices.TierSubgroup: all, devices.TierCoopMat: {memory.BF16}, devices.TierCoopMat2: half},
		"h100-bf16-k32":        {devices.TierScalar: all, devices.TierSubgroup: all, devices.TierCoopMat: half, devices.TierCoopMat2: half},
	}
	for name, tiers := range want {
		p := ps[name]
		support := ForwardSupport(p)
		require.Len(t, support, len(tiers), name)
		for _, s := range support {
			require.Equal(t, tiers[s.Tier], s.Inputs, "%s %s", name, s.Tier)
			require.Equal(t, HeadDims, s.HeadDims, "%s %s", name, s.Tier)
			for _, dt := range s.Inputs {
				want := HeadDims
				if name == "h100-bf16-k32" && s.Tier == devices.TierCoopMat2 && dt == memory.BF16 {
					want = []int{32, 64, 96, 128, 192, 256}
				}
				require.Equal(t, want, s.InputHeadDims[dt], "%s %s %s", name, s.Tier, dt)
			}
		}
	}
	// The features alone put intel-arc and the variants at the coopmat tier.
	for _, name := range []string{"intel-arc", "h100-sg8", "h100-no-f16-16x16x16"} {
		require.True(t, ps[name].Supports(devices.TierCoopMat), name)
	}
}

// The automatic choice per input type, as `vkattn devices` reports it.
func TestAutoForward(t *testing.T) {
	ps := tierProfiles(t)
	for _, c := range []struct {
		device string
		dt     memory.DType
		tier   devices.Tier
		kernel string
	}{
		{"nvidia-h100", memory.F16, devices.TierCoopMat, "flash_fwd_coopmat"}, // measured faster than coopmat2 there
		{"nvidia-h100", memory.F32, devices.TierSubgroup, "flash_fwd_subgroup"},
		{"nvidia-h100", memory.BF16, devices.TierCoopMat, "flash_fwd_coopmat_bf16"},
		{"amd-rdna3", memory.BF16, devices.TierSubgroup, "flash_fwd_subgroup"}, // no bf16 matrices
		{"h100-no-f16-16x16x16", memory.BF16, devices.TierCoopMat, "flash_fwd_coopmat_bf16"},
		{"h100-no-f16-16x16x16", memory.F16, devices.TierCoopMat2, "flash_fwd_coopmat2"},
		{"intel-arc", memory.F16, devices.TierSubgroup, "flash_fwd_subgroup"},
		{"h100-sg8", memory.F16, devices.TierCoopMat2, "flash_fwd_coopmat2"},
		{"lavapipe", memory.F32, devices.TierSubgroup, "flash_fwd_subgroup"},
	} {
		for _, d := range HeadDims {
			tier, kernel, err := AutoForward(ps[c.device], c.dt, d)
			require.NoError(t, err)
			require.Equal(t, c.tier, tier, "%s %s d%d", c.device, c.dt, d)
			require.Equal(t, c.kernel, kernel, "%s %s d%d", c.device, c.dt, d)
		}
	}
}
