package devices

import (
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
