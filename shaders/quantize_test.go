package shaders

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
)

// The quantizer is one scalar variant of plain compute that takes every input type, with its own
// four bindings (input, codes, scales, the key-scaling multipliers) and push constants.
func TestQuantizeVariant(t *testing.T) {
	v, err := ForTier(OpQuantize, devices.TierScalar)
	require.NoError(t, err)
	require.Equal(t, "quantize", v.Name)
	require.Equal(t, []devices.Feature{devices.FeatureCompute}, v.Requires)
	require.Equal(t, 4, v.Bindings)
	require.Equal(t, uint32(4*QuantizePushWords), v.PushSize)
	require.Nil(t, v.Inputs)
}
