package attention

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

// TestPagedForwardTiers: with paged K and V the forward never takes the coopmat2 tier, whose
// tensor layouts need evenly strided tokens: forced, it is an error that says so; chosen
// automatically, the next tier runs, on every simulated device wherever some tier runs.
func TestPagedForwardTiers(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
			for _, d := range HeadDims {
				_, _, dense := selectForward(&p, devices.TierAuto, dt, d)
				v, _, err := selectPagedForward(&p, devices.TierAuto, dt, d)
				if dense != nil {
					continue
				}
				require.NoError(t, err, "%s %s d%d", name, dt, d)
				require.NotEqual(t, devices.TierCoopMat2, v.Tier, "%s %s d%d", name, dt, d)
			}
		}
	}
	p, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	_, _, err = selectForward(&p, devices.TierCoopMat2, memory.F16, 128)
	require.NoError(t, err)
	_, _, err = selectPagedForward(&p, devices.TierCoopMat2, memory.F16, 128)
	require.ErrorContains(t, err, "paged")
}
