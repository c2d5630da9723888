package shaders

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
)

// Every registered variant has embedded SPIR-V with a valid header and a main entry point, and
// names are unique.
func TestVariantsHaveSPIRV(t *testing.T) {
	seen := map[string]bool{}
	for i := range Variants {
		v := &Variants[i]
		require.False(t, seen[v.Name], "duplicate variant %s", v.Name)
		seen[v.Name] = true
		b, err := v.SPIRV()
		require.NoError(t, err)
		require.Zero(t, len(b)%4, v.Name)
		require.Equal(t, uint32(0x07230203), binary.LittleEndian.Uint32(b), "%s: SPIR-V magic", v.Name)
		require.Contains(t, string(b), "main\x00", v.Name)
		require.NotEmpty(t, v.Source, v.Name)
		require.Contains(t, []string{"vulkan1.2", "vulkan1.3"}, v.TargetEnv(), v.Name)
	}
	_, err := Lookup("no-such-kernel")
	require.Error(t, err)
}

// Every operation has a scalar variant, so every device runs every operation, and Best picks the
// fastest tier each simulated device supports.
func TestBestOnSimulatedDevices(t *testing.T) {
	ops := map[Op]bool{}
	for _, v := range Variants {
		ops[v.Op] = true
	}
	for op := range ops {
		v, err := ForTier(op, devices.TierScalar)
		require.NoError(t, err, "%s has no scalar variant", op)
		require.Equal(t, op, v.Op)
	}
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		v, err := Best(OpForward, &p, devices.TierCoopMat2)
		require.NoError(t, err, name)
		require.True(t, p.Supports(v.Tier), name)
		for i := range Variants {
			w := &Variants[i]
			if w.Op == OpForward && p.Supports(w.Tier) {
				require.GreaterOrEqual(t, v.Tier, w.Tier, "%s: %s is faster than the chosen %s", name, w.Name, v.Name)
			}
		}
		capped, err := Best(OpForward, &p, devices.TierScalar)
		require.NoError(t, err)
		require.Equal(t, devices.TierScalar, capped.Tier)
	}
}
