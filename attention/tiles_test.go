package attention

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
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
			for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup} {
				for _, d := range HeadDims {
					tl, err := forwardTiles(tier, &p, d)
					require.NoError(t, err, "%s sg%d %s d%d", name, sg, tier, d)
					require.LessOrEqual(t, tl.sharedBytes(tier, uint32(d)), p.MaxSharedMemory, "%s %s d%d", name, tier, d)
					require.LessOrEqual(t, tl.WG, p.MaxWorkgroupInvocations)
					require.Positive(t, tl.BR)
					require.Positive(t, tl.BC)
					if tier == devices.TierSubgroup {
						require.Zero(t, tl.WG%tl.SG, "whole subgroups")
						require.Zero(t, tl.BR%(tl.WG/tl.SG), "rows split evenly over subgroups")
					}
				}
			}
		}
	}
}
