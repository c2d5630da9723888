package devices

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/vk"
)

func TestSimulatedTiers(t *testing.T) {
	want := map[string]Tier{"nvidia-h100": TierCoopMat2, "amd-rdna3": TierCoopMat, "intel-arc": TierCoopMat,
		"small-16k": TierSubgroup, "lavapipe": TierSubgroup}
	for name, best := range want {
		p, err := Simulated(name)
		require.NoError(t, err)
		for _, tier := range Tiers {
			require.Equal(t, tier <= best, p.Supports(tier), "%s %s", name, tier)
		}
	}
	_, err := Simulated("nope")
	require.ErrorContains(t, err, "nope")
}

func TestSubgroupTierNeedsFixedOrControlledSize(t *testing.T) {
	p, _ := Simulated("amd-rdna3")
	p.Features.SubgroupSizeControl = false // sizes 32..64 and no way to pin one
	require.False(t, p.Supports(TierSubgroup))
	p.SubgroupOps &^= vk.SubgroupArithmetic
	require.False(t, p.Supports(TierSubgroup))
}

func TestSelect(t *testing.T) {
	cpu, _ := Simulated("lavapipe")
	gpu, _ := Simulated("nvidia-h100")
	igpu, _ := Simulated("small-16k")
	ps := []Profile{cpu, igpu, gpu}
	t.Setenv(DeviceEnv, "")
	i, err := Select(ps, "")
	require.NoError(t, err)
	require.Equal(t, 2, i, "discrete first")
	i, _ = Select(ps[:2], "")
	require.Equal(t, 1, i, "integrated before cpu")

	t.Setenv(DeviceEnv, "0")
	i, err = Select(ps, "")
	require.NoError(t, err)
	require.Equal(t, 0, i)
	t.Setenv(DeviceEnv, "h100")
	i, err = Select(ps, "")
	require.NoError(t, err)
	require.Equal(t, 2, i)
	t.Setenv(DeviceEnv, "7")
	_, err = Select(ps, "")
	require.ErrorIs(t, err, vk.ErrNoDevice)
	t.Setenv(DeviceEnv, "radeon")
	_, err = Select(ps, "")
	require.ErrorContains(t, err, "radeon")
	i, err = Select(ps, "llvm")
	require.NoError(t, err)
	require.Equal(t, 0, i, "the argument wins over the environment")
	_, err = Select(nil, "")
	require.ErrorIs(t, err, vk.ErrNoDevice)
}

func TestParseTier(t *testing.T) {
	for _, tier := range Tiers {
		got, err := ParseTier(tier.String())
		require.NoError(t, err)
		require.Equal(t, tier, got)
	}
	_, err := ParseTier("fast")
	require.Error(t, err)
}

// Every feature has a readable name, and Supports(tier) is exactly "has every feature of
// TierRequires(tier)" on each simulated device.
func TestFeaturesSupportsTier(t *testing.T) {
	names := map[string]bool{}
	for _, f := range AllFeatures {
		s := f.String()
		require.NotContains(t, s, "feature(")
		require.False(t, names[s], "duplicate name %q", s)
		names[s] = true
	}
	require.Equal(t, "feature(99)", Feature(99).String())
	require.Equal(t, "compute queue and subgroup vote ops in compute",
		FeatureList([]Feature{FeatureCompute, FeatureSubgroupVote}))
	for _, name := range SimulatedNames() {
		p, err := Simulated(name)
		require.NoError(t, err)
		require.False(t, p.Has(Feature(99)))
		for _, tier := range append([]Tier{TierAuto}, Tiers...) {
			require.NotEmpty(t, TierRequires(tier))
			require.Equal(t, p.HasAll(TierRequires(tier)), p.Supports(tier), "%s %s", name, tier)
		}
		for _, f := range []Feature{FeatureCompute, FeatureSubgroupBasic, FeatureSubgroupVote,
			FeatureSubgroupArithmetic, FeatureSubgroupBallot, FeatureSubgroupShuffle, FeatureSubgroupWidth} {
			require.True(t, p.Has(f), "%s lacks %s", name, f)
		}
		require.Equal(t, p.Supports(TierCoopMat), p.Has(FeatureCooperativeMatrix), name)
		require.Equal(t, p.Supports(TierCoopMat2), p.Has(FeatureCooperativeMatrix2), name)
		require.Equal(t, name == "nvidia-h100", p.Has(FeatureInt8Matrix), name)
	}
	require.Nil(t, TierRequires(Tier(42)))
	var none Profile
	none.ComputeFamily = -1
	require.False(t, none.Supports(TierScalar))
	require.Equal(t, []Feature{FeatureCompute}, none.Missing(TierRequires(TierScalar)))
}

// A device lacking one subgroup feature in compute loses the subgroup tier (and those above),
// and Missing names exactly that feature.
func TestSupportsLackingSubgroupFeature(t *testing.T) {
	for _, bit := range []struct {
		mask uint32
		f    Feature
	}{{vk.SubgroupBasic, FeatureSubgroupBasic}, {vk.SubgroupVote, FeatureSubgroupVote}, {vk.SubgroupArithmetic, FeatureSubgroupArithmetic}} {
		p, _ := Simulated("nvidia-h100")
		p.SubgroupOps &^= bit.mask
		require.False(t, p.Has(bit.f), "%s", bit.f)
		require.Equal(t, []Feature{bit.f}, p.Missing(TierRequires(TierSubgroup)), "%s", bit.f)
		require.True(t, p.Supports(TierScalar))
		for _, tier := range []Tier{TierSubgroup, TierCoopMat, TierCoopMat2} {
			require.False(t, p.Supports(tier), "%s without %s", tier, bit.f)
		}
	}
	p, _ := Simulated("lavapipe")
	p.SubgroupComputeStage = false
	require.Equal(t, []Feature{FeatureSubgroupBasic, FeatureSubgroupArithmetic, FeatureSubgroupVote},
		p.Missing(TierRequires(TierSubgroup)))
	p, _ = Simulated("lavapipe")
	p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 2, 2, 2
	require.Equal(t, []Feature{FeatureSubgroupWidth}, p.Missing(TierRequires(TierSubgroup)))
}

// Int8 matrices need the non-saturating s8 16x16x32 shape with s32 accumulation at subgroup
// scope, shaderInt8 and storageBuffer8BitAccess: the simulated H100 has them all, and loses the
// feature without any one of them.
func TestInt8MatrixFeature(t *testing.T) {
	h100, err := Simulated("nvidia-h100")
	require.NoError(t, err)
	require.True(t, h100.Has(FeatureInt8Matrix))
	require.True(t, h100.HasCoopMatShapeOf(vk.ComponentS8, vk.ComponentS32, 16, 8, 32))
	require.False(t, h100.HasCoopMatShapeOf(vk.ComponentS8, vk.ComponentS32, 16, 16, 16))
	for what, f := range map[string]func(p *Profile){
		"shaderInt8":    func(p *Profile) { p.Features.ShaderInt8 = false },
		"8-bit storage": func(p *Profile) { p.Features.StorageBuffer8Bit = false },
		"saturating":    func(p *Profile) { p.CoopMatShapes[2].Saturating = true },
		"s32 result":    func(p *Profile) { p.CoopMatShapes[2].Result = vk.ComponentF32 },
		"scope":         func(p *Profile) { p.CoopMatShapes[2].SubgroupScope = false },
	} {
		p := h100
		p.CoopMatShapes = slices.Clone(h100.CoopMatShapes)
		require.Equal(t, uint32(32), p.CoopMatShapes[2].K, "the 16x16x32 s8 shape")
		f(&p)
		require.False(t, p.Has(FeatureInt8Matrix), what)
	}
}
